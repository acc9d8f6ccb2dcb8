"""The reconciler: Redis is only a queue and a cache, so everything in it is rebuilt from Postgres here,
one pass every few seconds (run by searchjobs/worker/scheduler.py):
- processing jobs whose lease ran out (their worker died) go back to pending;
- pending jobs with no live pointer in Redis (never enqueued because Redis was
  down, flushed, restarted, or a retry now due) are enqueued again: after a
  short grace for a submit still on its way in, or at once when a marker key
  shows that Redis lost its data;
- the cached views of rows changed since the last pass are re-written (version-checked),
  so a view whose write Redis refused is repaired within one pass;
- SMS outbox rows that are due, or left `sending` by a killed sender, are enqueued.
Several schedulers may run: a lock row in Postgres (searchjobs.db.locks) lets one pass at a time
work; it needs no session, so it holds through PgBouncer's transaction pooling.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from searchjobs import defaults, metrics
from searchjobs.db import locks
from searchjobs.db.engine import STATEMENT_TIMEOUT_MS, database_now
from searchjobs.jobs import store as job_queries
from searchjobs.notifications import outbox
from searchjobs.notifications.send import STALE_SENDING_SECONDS
from searchjobs.queue import enqueue_notification, enqueue_searches, rq_job_id, waiting
from searchjobs.runtime import Runtime

log = logging.getLogger(__name__)

RECONCILE_LOCK = "reconciler"  # lock row: one reconciler pass at a time across schedulers
# a holder that died keeps its lock this long; a pass takes well under a second and renews it between
# its steps, so a second scheduler takes over soon after the first one's host is gone
RECONCILE_LOCK_SECONDS = 10
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
    if not locks.take(runtime.db, RECONCILE_LOCK, runtime.worker_name, RECONCILE_LOCK_SECONDS):
        report.skipped = True
        return report
    try:
        if expire:
            report.expired = _expire_leases(runtime)
        report.requeued = _enqueue_missing_pointers(runtime)
        locks.take(runtime.db, RECONCILE_LOCK, runtime.worker_name, RECONCILE_LOCK_SECONDS)  # still ours: renewed between steps
        report.views_repaired = _refresh_changed_views(runtime, state)
        report.notifications = _enqueue_due_notifications(runtime)
    finally:
        locks.give_back(runtime.db, RECONCILE_LOCK, runtime.worker_name)
    return report


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
