"""The `searchjobs scheduler` process: the reconciler and the retention cleanup.

Redis is only a queue and a cache, so everything in it is rebuilt from
Postgres here, every few seconds:
- processing jobs whose lease ran out (their worker died) go back to pending;
- pending jobs with no live pointer in Redis (never enqueued because Redis was
  down, flushed, restarted, or a retry now due) are enqueued again: after a
  short grace for a submit still on its way in, or at once when a marker key
  shows that Redis lost its data;
- the cached views of rows changed since the last pass are re-written (version-checked),
  so a view whose write Redis refused is repaired within one pass;
- SMS outbox rows that are due, or left `sending` by a killed sender, are enqueued.
Several schedulers may run: a lock row in Postgres (searchjobs.worker.locks) lets one pass at a
time work; it needs no session, so it holds through PgBouncer's transaction pooling.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from searchjobs import defaults, metrics
from searchjobs.db.engine import DB_ERRORS, STATEMENT_TIMEOUT_MS, database_now, is_outage
from searchjobs.jobs import store as job_queries
from searchjobs.notifications import outbox
from searchjobs.notifications.send import STALE_SENDING_SECONDS
from searchjobs.queue import REDIS_UNAVAILABLE, enqueue_notification, enqueue_searches, rq_job_id, waiting
from searchjobs.runtime import Runtime
from searchjobs.worker import locks

log = logging.getLogger(__name__)

RECONCILE_LOCK = "reconciler"  # lock row: one reconciler pass at a time across schedulers
CLEANUP_LOCK = "cleanup"  # lock row: one cleanup at a time
# a holder that died keeps its lock this long; a pass takes well under a second and renews it between
# its steps, so a second scheduler takes over soon after the first one's host is gone
RECONCILE_LOCK_SECONDS = 10
CLEANUP_LOCK_SECONDS = 300  # renewed before every batch
RECONCILE_BATCH = 1000  # pending jobs read per page of a reconciler pass
REDIS_MARKER = "searchjobs:reconciler:marker"  # set by every pass; missing means Redis lost its data
# a row's updated_at is its statement's start time, and no statement outlives the statement timeout: look
# back that long (and a margin) before the last pass, so a slow commit's row is not missed
VIEW_REFRESH_OVERLAP = timedelta(milliseconds=STATEMENT_TIMEOUT_MS) + timedelta(seconds=5)
VIEW_REFRESH_FIRST_LOOKBACK = 60  # seconds of changes a freshly started scheduler re-writes


@dataclass
class PassReport:
    expired: int = 0
    requeued: list[str] = field(default_factory=list)
    views_repaired: int = 0
    notifications: int = 0
    skipped: bool = False


@dataclass
class ReconcilerState:
    """What one scheduler process carries from a pass to the next."""

    views_since: datetime | None = None  # Postgres time up to which changed rows' views were re-written


def reconcile(runtime: Runtime, *, expire: bool = True, state: ReconcilerState | None = None) -> PassReport:
    """One reconciler pass. Safe to run concurrently with workers and other schedulers.

    `expire=False` skips the lease check (the scheduler does so for one lease
    period after a database outage, during which no worker could renew).
    The lock is a row, taken and released by single statements: no transaction
    stays open across the pass's Redis calls.
    """
    report = PassReport()
    state = state if state is not None else ReconcilerState()
    if not _lock(runtime, RECONCILE_LOCK, RECONCILE_LOCK_SECONDS):
        report.skipped = True
        return report
    try:
        if expire:
            report.expired = _expire_leases(runtime)
        report.requeued = _enqueue_missing_pointers(runtime)
        _lock(runtime, RECONCILE_LOCK, RECONCILE_LOCK_SECONDS)  # still ours: renewed between steps
        report.views_repaired = _refresh_changed_views(runtime, state)
        report.notifications = _enqueue_due_notifications(runtime)
    finally:
        _unlock(runtime, RECONCILE_LOCK)
    return report


def _lock(runtime: Runtime, name: str, seconds: float) -> bool:
    with runtime.db.connect() as conn:
        return locks.acquire(conn, name, runtime.worker_name, seconds)


def _unlock(runtime: Runtime, name: str) -> None:
    """Release the lock; if Postgres is unreachable the lease simply runs out."""
    try:
        with runtime.db.connect() as conn:
            locks.release(conn, name, runtime.worker_name)
    except DB_ERRORS as exc:
        if not is_outage(exc):
            raise


def _expire_leases(runtime: Runtime) -> int:
    """Processing jobs whose worker stopped renewing go back to pending (their claim token is cleared)."""
    with runtime.db.connect() as conn:
        expired = job_queries.expire_leases(conn, runtime.settings.max_attempts)
    for row in expired:
        runtime.cache.write_row(row)
        log.info("lease expired: job's worker is gone", extra={
            "job_id": row["job_id"], "attempt": row["attempts"], "status": row["status"]})
        metrics.lease_expired(row)
    return len(expired)


def _enqueue_missing_pointers(runtime: Runtime) -> list[str]:
    """Due pending jobs with no live pointer in Redis are enqueued: one pipelined check and one
    pipelined enqueue per page, so a pass costs a few round trips per thousand jobs."""
    # the marker is gone when Redis lost its data (flushed, restarted empty): every pointer went
    # with it, so no pending job can still be on its way in and the grace is pointless
    grace = defaults.PENDING_GRACE_SECONDS if runtime.redis.exists(REDIS_MARKER) else 0
    requeued: list[str] = []
    after_id = 0
    while True:
        with runtime.db.connect() as conn:
            pending = job_queries.due_pending(conn, grace, RECONCILE_BATCH, after_id)
        pointers = [(row["job_id"], row["attempts"]) for row in pending]
        present = waiting(runtime.redis, [rq_job_id(job_id, attempts) for job_id, attempts in pointers])
        missing = [pointer for pointer, found in zip(pointers, present, strict=True) if not found]
        enqueue_searches(runtime.redis, missing, job_timeout=runtime.settings.job_timeout)
        requeued.extend(job_id for job_id, _ in missing)
        if len(pending) < RECONCILE_BATCH:
            break
        after_id = pending[-1]["id"]
    runtime.redis.set(REDIS_MARKER, "1")
    if requeued:
        log.info("re-enqueued %d pending jobs missing from Redis", len(requeued),
                 extra={"redis_data_lost": grace == 0})
    return requeued


def _refresh_changed_views(runtime: Runtime, state: ReconcilerState) -> int:
    """Re-write the cached views of rows changed since the last pass (version-checked, so a no-op for
    views already current), and the tombstones of jobs deleted since: a write skipped while Redis
    refused it is repaired within one pass."""
    with runtime.db.connect() as conn:
        now = database_now(conn)
    # a statement's updated_at is its start time: look back a little past the last pass for slow commits
    since = (state.views_since or now - timedelta(seconds=VIEW_REFRESH_FIRST_LOOKBACK)) - VIEW_REFRESH_OVERLAP
    repaired, after_id = 0, 0
    while True:
        with runtime.db.connect() as conn:
            rows = job_queries.changed_since(conn, since, RECONCILE_BATCH, after_id)
        repaired += runtime.cache.write_rows(rows)
        if len(rows) < RECONCILE_BATCH:
            break
        after_id = rows[-1]["id"]
    with runtime.db.connect() as conn:  # and the tombstones of jobs deleted meanwhile
        deleted = job_queries.deleted_since(conn, since)
    runtime.cache.delete_many([(d["job_id"], d["result_token_hash"]) for d in deleted])
    state.views_since = now
    if repaired:
        log.info("re-wrote %d cached views that were behind Postgres", repaired)
    return repaired


def _enqueue_due_notifications(runtime: Runtime) -> int:
    with runtime.db.connect() as conn:
        due = outbox.due(conn, STALE_SENDING_SECONDS)
    present = waiting(runtime.redis, [f"sms-{notification_id}" for notification_id in due])
    enqueued = 0
    for notification_id, found in zip(due, present, strict=True):
        if not found:
            enqueue_notification(runtime.redis, notification_id)
            enqueued += 1
    return enqueued


@dataclass
class CleanupReport:
    jobs: int = 0
    events: int = 0
    notifications: int = 0
    images: int = 0
    batches: int = 0
    longest_batch_ms: float = 0.0
    skipped: bool = False  # another cleanup held the lock; nothing was deleted


def cleanup(runtime: Runtime, *, retention_days: int | None = None, dry_run: bool = False,
            batch: int = defaults.CLEANUP_BATCH, now: datetime | None = None) -> CleanupReport:
    """Delete finished jobs older than the retention period, in small batches (short locks)."""
    days = runtime.settings.retention_days if retention_days is None else retention_days
    if now is None:  # Postgres time, like every other deadline: the scheduler host's clock does not matter
        with runtime.db.connect() as conn:
            now = database_now(conn)
    cutoff = now - timedelta(days=days)
    report = CleanupReport()
    with runtime.engine.connect() as conn:
        counts = job_queries.count_expired(conn, cutoff)
    report.events, report.notifications = int(counts["events"]), int(counts["notifications"])
    if dry_run:
        report.jobs, report.images = int(counts["jobs"]), int(counts["images"])
        return report
    if not _lock(runtime, CLEANUP_LOCK, CLEANUP_LOCK_SECONDS):
        return CleanupReport(skipped=True)
    try:
        while True:
            started = time.perf_counter()
            with runtime.engine.begin() as conn:
                row = job_queries.delete_expired_batch(conn, cutoff, batch)
            report.longest_batch_ms = max(report.longest_batch_ms, (time.perf_counter() - started) * 1000)
            if row["jobs"] == 0:
                break
            report.batches += 1
            report.jobs += row["jobs"]
            report.images += row["images"]
            try:  # one round trip per batch; a refused tombstone is re-written by the reconciler
                runtime.cache.delete_many(list(zip(row["job_ids"], row["token_hashes"], strict=True)))
            except REDIS_UNAVAILABLE as exc:
                log.warning("cleanup: tombstones skipped (%s); the reconciler writes them", type(exc).__name__)
            _lock(runtime, CLEANUP_LOCK, CLEANUP_LOCK_SECONDS)  # still ours: extend it for the next batch
    finally:
        _unlock(runtime, CLEANUP_LOCK)
    with runtime.db.connect() as conn:
        job_queries.forget_deletions(conn, runtime.settings.cache_ttl + VIEW_REFRESH_OVERLAP.total_seconds())
    log.info("cleanup removed %d jobs in %d batches", report.jobs, report.batches)
    return report


def run_scheduler(runtime: Runtime, stop: threading.Event, *, once: bool = False) -> None:
    """Reconcile every few seconds and clean up hourly until `stop` is set."""
    next_cleanup = time.monotonic()
    expire_after = 0.0  # monotonic time before which leases are not expired (set after a database outage)
    state = ReconcilerState()
    while not stop.is_set():
        try:
            reconcile(runtime, expire=time.monotonic() >= expire_after, state=state)
            if time.monotonic() >= next_cleanup:
                cleanup(runtime)
                next_cleanup = time.monotonic() + defaults.CLEANUP_INTERVAL
        except REDIS_UNAVAILABLE as exc:
            log.warning("reconciler: Redis unavailable (%s); next pass in %ss", type(exc).__name__,
                        runtime.settings.reconcile_interval)
        except Exception as exc:
            if is_outage(exc):
                log.warning("reconciler: database unavailable; next pass in %ss",
                            runtime.settings.reconcile_interval)
                # workers could not renew their leases meanwhile: give them one lease period to do so
                expire_after = time.monotonic() + runtime.settings.lease_seconds
            else:
                # the reconciler is what recovers lost work: a bug in one pass must not stop the next
                log.exception("reconciler pass failed")
        if once:
            return
        stop.wait(runtime.settings.reconcile_interval)
