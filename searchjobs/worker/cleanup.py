"""Retention: finished jobs older than the retention period go, with their events, SMS rows and images,
in small batches (short locks), and their cached views become tombstones. Run hourly by the scheduler,
or by `searchjobs cleanup`; one cleanup at a time across schedulers (a lock row, searchjobs.db.locks).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from searchjobs import defaults
from searchjobs.db import locks
from searchjobs.db.engine import database_now
from searchjobs.jobs import store as job_queries
from searchjobs.queue import REDIS_UNAVAILABLE
from searchjobs.runtime import Runtime
from searchjobs.worker.reconciler import VIEW_REFRESH_OVERLAP

log = logging.getLogger(__name__)

CLEANUP_LOCK = "cleanup"  # lock row: one cleanup at a time
CLEANUP_LOCK_SECONDS = 300  # renewed before every batch


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
            batch: int = defaults.CLEANUP_BATCH, now: datetime | None = None,
            stop: threading.Event | None = None) -> CleanupReport:
    """Delete finished jobs older than the retention period, in small batches (short locks).

    Ends after the batch in progress when `stop` is set (a scheduler told to stop exits within a batch,
    not after a whole backlog) or when another scheduler took the lock over; the next run does the rest.
    """
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
    if not locks.take(runtime.db, CLEANUP_LOCK, runtime.worker_name, CLEANUP_LOCK_SECONDS):
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
            if stop is not None and stop.is_set():
                log.info("cleanup stopped after %d batches; the next run does the rest", report.batches)
                break
            # still ours: extend it for the next batch (a batch that outlived the lock lets another cleanup in)
            if not locks.take(runtime.db, CLEANUP_LOCK, runtime.worker_name, CLEANUP_LOCK_SECONDS):
                log.warning("cleanup lock taken over by another scheduler; stopping here")
                break
    finally:
        locks.give_back(runtime.db, CLEANUP_LOCK, runtime.worker_name)
    with runtime.db.connect() as conn:
        job_queries.forget_deletions(conn, runtime.settings.cache_ttl + VIEW_REFRESH_OVERLAP.total_seconds())
    log.info("cleanup removed %d jobs in %d batches", report.jobs, report.batches)
    return report
