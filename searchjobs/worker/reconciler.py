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
work; it needs no session, so it holds through PgBouncer's transaction pooling. A pass renews it
between pages (a sweep of 100k queued jobs takes ~16 s, longer than the lease), and a pass that finds
it taken over (its scheduler was frozen or cut off past the lease) stops there.

What a pass checks in Redis is bounded, not the whole queue. It sweeps every due pending job (one
pointer check each) when Redis lost its data (the marker is missing, or a sweep after a loss did not
finish) and at a scheduler's first pass (a fresh or restarted scheduler, so taking over from another
never skips a job). Otherwise it checks the pending jobs that became due or changed since its previous
pass (submits past their grace, retries now due, expired leases; looked up with the same overlap as
the view refresh, so a slow commit is not missed) and one rotating page of ROTATION_PAGE older ones,
by row id, wrapping at the end: a pointer lost while Redis kept its data (evicted, deleted by hand, a
worker killed between its pop and its claim) is found within ceil(queued / ROTATION_PAGE) + 1 passes
of one scheduler, `queued` being the most due pending jobs meanwhile (100k queued: 51 passes, ~4 min;
fewer than ROTATION_PAGE queued: every pass checks every one).
"""

from __future__ import annotations

import logging
import threading
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
# a holder that died keeps its lock this long; a pass renews it between pages once a third of it has gone
# by (a steady pass takes well under a second, a sweep of 100k queued ~16 s), so a second scheduler takes
# over soon after the first one's host is gone, and never while its pass goes on
RECONCILE_LOCK_SECONDS = 10
RECONCILE_BATCH = 1000  # pending jobs read per page of a reconciler pass
REDIS_MARKER = "searchjobs:reconciler:marker"  # missing means Redis lost its data
# its values: set to SWEEPING before the sweep that follows a loss, to SWEPT (only if still there) after it,
# so a loss during the sweep, or a sweep cut short, is swept again by the next pass of any scheduler
MARKER_SWEEPING, MARKER_SWEPT = b"sweeping", b"swept"
ROTATION_PAGE = 2000  # older due pending jobs whose pointer a steady pass checks, a page by row id that wraps
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
    skipped: bool = False  # another scheduler held the lock: nothing was done
    lock_lost: bool = False  # another scheduler took the lock over mid-pass: the pass stopped there
    stopped: bool = False  # the scheduler was told to stop mid-pass: the pass stopped there


@dataclass
class ReconcilerState:
    """What one scheduler process carries from a pass to the next."""

    views_since: datetime | None = None  # Postgres time up to which changed rows' views were re-written
    # Postgres time at the start of the last completed pointer check (None: the next pass sweeps every job)
    pointers_since: datetime | None = None
    rotation_after_id: int = 0  # the steady pass's page of older pending jobs starts after this row id


class _Stopping(Exception):
    """The scheduler was told to stop: the pass ends at the page it is on."""


@dataclass
class PassControl:
    """What a pass checks between two pages: its scheduler's stop signal, and its lock."""

    lock: locks.HeldLock
    stop: threading.Event | None = None

    def go_on(self) -> None:
        """End the pass if the scheduler is stopping; keep the lock (LockLost if it was taken over)."""
        if self.stop is not None and self.stop.is_set():
            raise _Stopping
        self.lock.keep()


def reconcile(runtime: Runtime, *, expire: bool = True, state: ReconcilerState | None = None,
              stop: threading.Event | None = None) -> PassReport:
    """One reconciler pass. Safe to run concurrently with workers and other schedulers.

    `expire=False` skips the lease check (the scheduler does so for one lease
    period after a database outage, during which no worker could renew). `stop`, once set (SIGTERM),
    ends the pass at its next page: a sweep of a long queue takes longer than supervisors wait, and
    what it leaves undone is done by the next pass of any scheduler.
    The lock is a row, taken and released by single statements: no transaction
    stays open across the pass's Redis calls.
    """
    report = PassReport()
    state = state if state is not None else ReconcilerState()
    lock = locks.HeldLock(runtime.db, RECONCILE_LOCK, runtime.worker_name, RECONCILE_LOCK_SECONDS)
    if not lock.take():
        report.skipped = True
        return report
    control = PassControl(lock, stop)
    try:
        if expire:
            report.expired = _expire_leases(runtime)
        report.requeued = _enqueue_missing_pointers(runtime, state, control)
        control.go_on()
        report.views_repaired = _refresh_changed_views(runtime, state, control)
        control.go_on()
        report.notifications = _enqueue_due_notifications(runtime)
    except locks.LockLost:
        # this scheduler outlived its lease (frozen, cut off) and another one runs passes now; what this
        # pass left undone (its state was not moved on) is done by the next pass of either
        log.warning("reconciler pass stopped: another scheduler took the lock over")
        report.lock_lost = True
    except _Stopping:
        log.info("reconciler pass stopped: the scheduler is stopping")
        report.stopped = True
    finally:
        lock.give_back()
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


def _enqueue_missing_pointers(runtime: Runtime, state: ReconcilerState, control: PassControl) -> list[str]:
    """Due pending jobs with no live pointer in Redis are enqueued: every one after Redis lost its data or
    at a scheduler's first pass, else those due or changed since the last pass and a rotating page of older
    ones. One pipelined check and one pipelined enqueue per page of RECONCILE_BATCH."""
    marker = runtime.redis.get(REDIS_MARKER)
    # the marker is gone when Redis lost its data (flushed, restarted empty, failed over to an empty
    # replica): every pointer went with it, so no pending job can still be on its way in and the grace is
    # pointless; set before the sweep, so a loss during it deletes it again
    data_lost = marker is None or marker == MARKER_SWEEPING
    if marker is None:
        runtime.redis.set(REDIS_MARKER, MARKER_SWEEPING)
    grace = 0 if data_lost else defaults.PENDING_GRACE_SECONDS
    with runtime.db.connect() as conn:
        now = database_now(conn)  # before the reads: the next pass looks for changes from here on
    if data_lost or state.pointers_since is None:
        requeued = _check_every_pending(runtime, grace, control)
        rotation_after_id = 0
    else:
        requeued, rotation_after_id = _check_changed_and_a_page(
            runtime, state.pointers_since, state.rotation_after_id, grace, control)
    if data_lost:
        runtime.redis.set(REDIS_MARKER, MARKER_SWEPT, xx=True)  # unless Redis lost it again meanwhile
    state.pointers_since, state.rotation_after_id = now, rotation_after_id
    if requeued:
        log.info("re-enqueued %d pending jobs missing from Redis", len(requeued),
                 extra={"redis_data_lost": data_lost})
    return requeued


def _check_every_pending(runtime: Runtime, grace: float, control: PassControl) -> list[str]:
    requeued: list[str] = []
    after_id = 0
    while True:
        control.go_on()
        with runtime.db.connect() as conn:
            pending = job_queries.due_pending(conn, grace, RECONCILE_BATCH, after_id)
        requeued += _enqueue_if_missing(runtime, pending, control)
        if len(pending) < RECONCILE_BATCH:
            return requeued
        after_id = pending[-1]["id"]


def _check_changed_and_a_page(runtime: Runtime, last_pass: datetime, rotation_after_id: int,
                              grace: float, control: PassControl) -> tuple[list[str], int]:
    """The due pending jobs that became due or changed since the last pass, then the page of older ones
    after `rotation_after_id`; returns the jobs enqueued and the row id the next page starts after (0: wrapped)."""
    # a row's updated_at (and a retry's run_after) is its statement's start time: look back past the
    # last pass as far as a statement can take to commit, as the view refresh does
    since = last_pass - VIEW_REFRESH_OVERLAP
    requeued: list[str] = []
    checked: set[str] = set()
    after_id = 0
    while True:
        control.go_on()
        with runtime.db.connect() as conn:
            changed = job_queries.pending_due_since(conn, since, grace, RECONCILE_BATCH, after_id)
        checked.update(row["job_id"] for row in changed)
        requeued += _enqueue_if_missing(runtime, changed, control)
        if len(changed) < RECONCILE_BATCH:
            break
        after_id = changed[-1]["id"]
    control.go_on()
    with runtime.db.connect() as conn:
        page = job_queries.due_pending(conn, grace, ROTATION_PAGE, rotation_after_id)
    requeued += _enqueue_if_missing(runtime, [row for row in page if row["job_id"] not in checked], control)
    return requeued, (page[-1]["id"] if len(page) == ROTATION_PAGE else 0)


def _enqueue_if_missing(runtime: Runtime, pending: list[dict], control: PassControl) -> list[str]:
    """One pipelined check of these jobs' pointers, one pipelined enqueue of those missing (per RECONCILE_BATCH).

    The lock is kept between the check and the enqueue: a scheduler frozen in between finds it taken over
    and enqueues nothing another may have enqueued meanwhile (one frozen inside the enqueue itself still
    sends it when it wakes: at most a page of duplicate pointers, each a refused claim)."""
    requeued: list[str] = []
    for start in range(0, len(pending), RECONCILE_BATCH):
        pointers = [(row["job_id"], row["attempts"]) for row in pending[start:start + RECONCILE_BATCH]]
        present = waiting(runtime.redis, [rq_job_id(job_id, attempts) for job_id, attempts in pointers])
        missing = [pointer for pointer, found in zip(pointers, present, strict=True) if not found]
        control.go_on()
        enqueue_searches(runtime.redis, missing, job_timeout=runtime.settings.job_timeout)
        requeued.extend(job_id for job_id, _ in missing)
    return requeued


def _refresh_changed_views(runtime: Runtime, state: ReconcilerState, control: PassControl) -> int:
    """Re-write the cached views of rows changed since the last pass (version-checked, so a no-op for
    views already current), and the tombstones of jobs deleted since: a write skipped while Redis
    refused it is repaired within one pass."""
    with runtime.db.connect() as conn:
        now = database_now(conn)
    # a statement's updated_at is its start time: look back a little past the last pass for slow commits
    since = (state.views_since or now - timedelta(seconds=VIEW_REFRESH_FIRST_LOOKBACK)) - VIEW_REFRESH_OVERLAP
    repaired, after_id = 0, 0
    while True:
        control.go_on()
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
