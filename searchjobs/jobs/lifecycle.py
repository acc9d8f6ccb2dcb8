"""The life of one attempt at a job: claim, progress steps, complete, fail, retry, release.

Each step is one version-checked statement committed to Postgres before the
worker goes on, then written to the cache (which also wakes live streams): the
claim and the progress steps behind the worker (JobCache.write_behind: a view
is only a cache), the terminal and requeue writes in line.
When Postgres is unreachable the step waits and retries with backoff instead
of failing the job; if the write had in fact landed before the connection
dropped, the retry recognises its own write and adopts it.

Every write carries the claim's fencing token. Once the lease keeper learns
that the lease is lost (the reconciler re-queued the job after this worker
froze or was cut off, or an operator retried it), the attempt stops at its
next step and writes nothing; a write that races the loss is refused by
Postgres all the same.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable

import sqlalchemy as sa

from searchjobs import defaults, metrics
from searchjobs.db.engine import DB_ERRORS, is_outage
from searchjobs.errors import SearchJobsError
from searchjobs.jobs import store as job_queries
from searchjobs.queue import REDIS_UNAVAILABLE, backoff_delay, enqueue_notification, enqueue_search
from searchjobs.runtime import Runtime

log = logging.getLogger(__name__)

DB_OUTAGE_PATIENCE = 90.0  # seconds a step keeps retrying an unreachable Postgres before giving up


class AttemptOver(SearchJobsError):
    """This attempt must stop: the job was cancelled, taken over, or released."""

    code = "attempt_over"


class JobCancelled(AttemptOver):
    """The client cancelled the job; it is now `cancelled`."""

    code = "cancelled"


class LostOwnership(AttemptOver):
    """A newer attempt owns the job (this worker was presumed dead): our writes are refused."""

    code = "stale_attempt"


class Released(AttemptOver):
    """The worker is shutting down; the job went back to the queue at its last persisted stage."""

    code = "released"


def _with_db_retry(write: Callable[[sa.Connection], dict | None], engine: sa.Engine, what: str,
                   job_id: str) -> tuple[dict | None, bool]:
    """Run one autocommit statement, retrying while Postgres is unreachable.

    Returns (row, retried): `retried` tells the caller an earlier try may have
    landed even though we never saw its answer.
    """
    deadline = time.monotonic() + DB_OUTAGE_PATIENCE
    retried, pause = False, 0.2
    while True:
        try:
            with engine.connect() as conn:
                return write(conn), retried
        except DB_ERRORS as exc:
            if not is_outage(exc) or time.monotonic() > deadline:
                raise
            log.warning("database unreachable during %s; retrying in %.1fs", what, pause,
                        extra={"job_id": job_id})
            time.sleep(pause)
            retried, pause = True, min(pause * 2, 5.0)


class JobAttempt:
    """One worker's attempt at one job. Holds its claim's fencing token and the version it last wrote."""

    def __init__(self, runtime: Runtime, row: dict):
        self.rt = runtime
        self.row = row
        self.job_id: str = row["job_id"]
        self.attempt: int = row["attempts"]
        self.token: str = row["claim_token"]
        self.lease_lost = threading.Event()  # set by the lease keeper when a renewal finds the job not ours
        self.stage_started = time.perf_counter()  # for the per-stage duration metric

    @property
    def version(self) -> int:
        return self.row["version"]

    def _write(self, what: str, statement: Callable[[sa.Connection], dict | None]) -> tuple[dict | None, bool]:
        return _with_db_retry(statement, self.rt.db, what, self.job_id)

    # -- claim ------------------------------------------------------------

    @classmethod
    def claim(cls, runtime: Runtime, job_id: str) -> JobAttempt | None:
        settings = runtime.settings
        token = str(uuid.uuid4())
        row, retried = _with_db_retry(
            lambda c: job_queries.claim(c, job_id, token, runtime.worker_name, settings.lease_seconds, progress=5),
            runtime.db, "claim", job_id,
        )
        if row is None and retried:
            # the first try may have landed before its answer was lost: the token tells if the claim is ours
            current, _ = _with_db_retry(lambda c: job_queries.get(c, job_id), runtime.db, "read", job_id)
            row = current if current is not None and current["claim_token"] == token else None
        if row is None:
            log.info("job not claimable (not pending, cancelled or gone)", extra={"job_id": job_id})
            return None
        attempt = cls(runtime, row)
        runtime.current_attempt = attempt
        runtime.cache.write_behind(row)
        log.info("job claimed", extra={"job_id": job_id, "attempt": attempt.attempt, "worker": runtime.worker_name})
        metrics.job_claimed(row)
        return attempt

    # -- steps ------------------------------------------------------------

    def check_owned(self) -> None:
        """Stop before doing more work (or writing anything) once the lease is known to be lost."""
        if self.lease_lost.is_set():
            log.warning("lease lost: the job was given to another attempt; stopping without writing",
                        extra={"job_id": self.job_id, "attempt": self.attempt})
            raise LostOwnership("the lease was lost")

    def _adopt_or_lose(self, row: dict | None, retried: bool, expected: dict) -> dict:
        """After a write that matched nothing: was it ours (landed before a dropped answer) or did we lose?"""
        if row is not None:
            return row
        current, _ = self._write("read", lambda c: job_queries.get(c, self.job_id))
        if current is None:
            raise LostOwnership("the job was deleted")
        mine = current["claim_token"] == self.token  # only this claim's writes leave its token on the row
        landed = (retried and mine and current["version"] == self.version + 1
                  and all(current[k] == v for k, v in expected.items()))
        if landed:
            return current
        if mine and current["status"] == "processing" and current["cancel_requested"]:
            return current
        log.warning("stale attempt: a newer writer owns the job; our write was refused",
                    extra={"job_id": self.job_id, "attempt": self.attempt, "current_version": current["version"],
                           "our_version": self.version, "status": current["status"]})
        raise LostOwnership(f"job is at version {current['version']} ({current['status']})")

    def step(self, progress: int, stage: str, detail: dict | None = None) -> None:
        """Persist one progress step (committed before returning), then cache it."""
        self.check_owned()
        if self.rt.release_requested.is_set():
            self.release("shutdown")
        metrics.stage_done(stage, time.perf_counter() - self.stage_started)
        write_started = time.perf_counter()
        row, retried = self._write("progress", lambda c: job_queries.progress(
            c, self.job_id, self.token, self.version, progress, stage, self.rt.settings.lease_seconds, detail,
            durable=self.rt.settings.progress_commit == "durable"))
        self.stage_started = time.perf_counter()
        metrics.PROGRESS_WRITE.observe(self.stage_started - write_started)
        self.row = self._adopt_or_lose(row, retried, {"stage": stage})
        self.rt.cache.write_behind(self.row)
        self._cancel_if_requested()

    def _cancel_if_requested(self) -> None:
        """The client asked to cancel (seen on our step, or as the reason our write was refused): it wins."""
        if self.row["status"] == "processing" and self.row["cancel_requested"]:
            self._cancel()

    def _cancel(self) -> None:
        row, _ = self._write("cancel", lambda c: job_queries.mark_cancelled(c, self.job_id, self.token, self.version))
        if row is not None:
            self.row = row
            self.rt.cache.write_row(row)
        log.info("job cancelled at a progress step", extra={"job_id": self.job_id, "attempt": self.attempt})
        metrics.JOBS_CANCELLED.inc()
        raise JobCancelled("the job was cancelled")

    def complete(self, results: dict, sms_body: str | None) -> dict:
        """Store results, mark completed and write the SMS outbox row: one statement, then enqueue the send."""
        self.check_owned()
        row, retried = self._write(
            "complete", lambda c: job_queries.complete(c, self.job_id, self.token, self.version, results, sms_body))
        self.row = row = self._adopt_or_lose(row, retried, {"status": "completed"})
        self._cancel_if_requested()
        self.rt.cache.write_row(row)
        log.info("job completed", extra={"job_id": self.job_id, "attempt": self.attempt,
                                         "took_ms": results.get("took_ms")})
        metrics.job_finished(row, "completed")
        notification_id = row.get("notification_id")
        if notification_id is not None:
            try:
                enqueue_notification(self.rt.redis, notification_id)
            except REDIS_UNAVAILABLE:
                # the outbox row is committed; the scheduler enqueues it once Redis is back
                log.warning("could not enqueue the SMS; the scheduler will", extra={"job_id": self.job_id})
        return row

    def fail(self, error_code: str, message: str) -> None:
        message = message[: defaults.ERROR_MESSAGE_MAX]
        self.check_owned()
        row, retried = self._write(
            "fail", lambda c: job_queries.fail(c, self.job_id, self.token, self.version, error_code, message))
        self.row = self._adopt_or_lose(row, retried, {"status": "failed"})
        self._cancel_if_requested()
        self.rt.cache.write_row(self.row)
        log.info("job failed", extra={"job_id": self.job_id, "attempt": self.attempt, "error_code": error_code})
        metrics.job_finished(self.row, "failed", error_code)

    def retry_later(self, error_code: str, message: str) -> None:
        """A transient failure: back to pending with a backoff, or failed once attempts are used up."""
        if self.attempt >= self.rt.settings.max_attempts:
            self.fail(error_code, f"gave up after {self.attempt} attempts: {message}")
            return
        delay = backoff_delay(self.attempt)
        self._requeue(delay, "retry", error_code, message[: defaults.ERROR_MESSAGE_MAX])
        # an expected retry is not an error
        log.info("job will be retried", extra={"job_id": self.job_id, "attempt": self.attempt,
                                               "error_code": error_code, "delay_s": round(delay, 2)})
        metrics.JOBS_RETRIED.labels(error_code).inc()

    def release(self, reason: str) -> None:
        """Give the job back at its last persisted stage (graceful shutdown) and stop this attempt."""
        self._requeue(0.0, reason, None, None)
        log.info("job released", extra={"job_id": self.job_id, "attempt": self.attempt, "reason": reason})
        metrics.JOBS_RETRIED.labels(reason).inc()
        raise Released(reason)

    def _requeue(self, delay: float, reason: str, error_code: str | None, message: str | None) -> None:
        self.check_owned()
        row, retried = self._write("requeue", lambda c: job_queries.requeue(
            c, self.job_id, self.token, self.version, delay=delay, reason=reason, error_code=error_code, error=message))
        self.row = self._adopt_or_lose(row, retried, {"status": "pending"})
        self._cancel_if_requested()
        self.rt.cache.write_row(self.row)
        try:
            if delay <= 0:  # a delayed retry is enqueued by the scheduler once `run_after` has passed
                enqueue_search(self.rt.redis, self.job_id, attempts=self.row["attempts"],
                               job_timeout=self.rt.settings.job_timeout)
        except REDIS_UNAVAILABLE:
            log.warning("could not re-enqueue; the reconciler will", extra={"job_id": self.job_id})
