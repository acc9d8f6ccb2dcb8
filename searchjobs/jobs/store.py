"""Queries on search_jobs and search_job_events; their SQL is in store.sql, beside this module.

Every state change is a single SQL statement: the job UPDATE and its event
INSERT travel together in one CTE, so each step is atomic and costs one round
trip on an autocommit connection. Every change is version-checked: it names the
version it read, bumps it, and touches nothing if someone else moved first.

Every write of a worker's attempt is also fenced: a claim draws a fresh
`claim_token` (a UUID), and each write of that attempt names it. The reconciler
and a manual retry clear it, so no later attempt (not even one with the same
`attempts` count after a retry reset it) can be taken for this one. Each fenced
statement in store.sql says so in its WHERE clause: `claim_token = CAST(:token AS uuid)`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from searchjobs import defaults
from searchjobs.db import sql
from searchjobs.errors import Conflict, NotFound

QUERIES = sql.load(__file__)


class StaleWrite(Conflict):
    """A version-checked write found a newer version: this writer lost and changed nothing."""

    code = "stale_write"

    def __init__(self, message: str, current: dict | None = None):
        super().__init__(message)
        self.current = current


class InvalidTransition(Conflict):
    """The job is in a state that does not allow this change."""

    code = "invalid_transition"

    def __init__(self, message: str, current: dict | None = None):
        super().__init__(message)
        self.current = current


@dataclass(frozen=True)
class NewJob:
    job_id: str
    categories: list[str]
    result_token_hash: str
    image_id: int | None = None
    original_image_url: str | None = None
    phone_number: str | None = None
    country_code: str | None = None
    client_id: int | None = None
    idempotency_key: str | None = None
    request_hash: str | None = None
    meta: dict | None = None


def _row(result: sa.CursorResult) -> dict | None:
    row = result.mappings().first()
    return dict(row) if row is not None else None


_CREATE = QUERIES["create"]

_RELEASE_EXPIRED_KEY = QUERIES["release_expired_key"]

_BY_IDEMPOTENCY_KEY = QUERIES["by_idempotency_key"]


def create(conn: sa.Connection, job: NewJob) -> dict:
    """Insert a pending job and its `created` event in one statement.

    With an idempotency key this client used within the idempotency window,
    returns the existing job instead (with `created` False); the caller compares
    `request_hash`. A key older than the window is released and used afresh.
    """
    if job.idempotency_key is not None:
        conn.execute(_RELEASE_EXPIRED_KEY, {"client_id": job.client_id, "key": job.idempotency_key,
                                            "hours": defaults.IDEMPOTENCY_WINDOW_HOURS})
    row = _row(
        conn.execute(
            _CREATE,
            {
                "job_id": job.job_id,
                "categories": list(job.categories),
                "image_id": job.image_id,
                "original_image_url": job.original_image_url,
                "phone_number": job.phone_number,
                "country_code": job.country_code,
                "client_id": job.client_id,
                "idempotency_key": job.idempotency_key,
                "request_hash": job.request_hash,
                "result_token_hash": job.result_token_hash,
                "meta": json.dumps(job.meta or {}),
                "detail": json.dumps({}),
            },
        )
    )
    if row is not None:
        return row
    existing = _row(conn.execute(_BY_IDEMPOTENCY_KEY, {"client_id": job.client_id, "key": job.idempotency_key}))
    if existing is None:  # the conflicting row was deleted in between; vanishingly rare
        raise Conflict("the idempotency key was in use by a job that is gone; retry")
    return existing


_GET = QUERIES["get"]
_GET_BY_TOKEN = QUERIES["get_by_token_hash"]


def get(conn: sa.Connection, job_id: str) -> dict | None:
    return _row(conn.execute(_GET, {"job_id": job_id}))


def get_by_token_hash(conn: sa.Connection, token_hash: str) -> dict | None:
    return _row(conn.execute(_GET_BY_TOKEN, {"token_hash": token_hash}))


_CLAIM = QUERIES["claim"]


def claim(conn: sa.Connection, job_id: str, token: str, worker: str, lease_seconds: float,
          progress: int) -> dict | None:
    """pending -> processing for this worker, fenced by `token` (fresh per claim, drawn by the claimant,
    so a claim whose answer was lost can be recognised); None if the job is not pending."""
    return _row(
        conn.execute(
            _CLAIM,
            {
                "job_id": job_id,
                "token": token,
                "worker": worker,
                "lease": float(lease_seconds),
                "progress": progress,
                "detail": json.dumps({"worker": worker}),
            },
        )
    )


_PROGRESS = QUERIES["progress"]
_PROGRESS_FAST = QUERIES["progress_fast"]  # the same step, its commit not waiting for the WAL flush


def progress(
    conn: sa.Connection, job_id: str, token: str, version: int, progress: int, stage: str, lease_seconds: float,
    detail: dict | None = None, *, durable: bool = True,
) -> dict | None:
    """One persisted progress step (row + event, one statement). None if `version` is no longer current."""
    return _row(
        conn.execute(
            _PROGRESS if durable else _PROGRESS_FAST,
            {
                "job_id": job_id,
                "token": token,
                "version": version,
                "progress": progress,
                "stage": stage,
                "lease": float(lease_seconds),
                "detail": json.dumps(detail or {}),
            },
        )
    )


_COMPLETE = QUERIES["complete"]


def complete(conn: sa.Connection, job_id: str, token: str, version: int, results: dict,
             sms_body: str | None) -> dict | None:
    """processing -> completed with results, its event and (with a phone) the SMS outbox row: one statement."""
    return _row(
        conn.execute(
            _COMPLETE,
            {
                "job_id": job_id,
                "token": token,
                "version": version,
                "results": json.dumps(results),
                "sms_body": sms_body,
                "detail": json.dumps({"took_ms": results.get("took_ms")}),
            },
        )
    )


_FINISH_WITHOUT_RESULTS = QUERIES["finish_without_results"]


def fail(conn: sa.Connection, job_id: str, token: str, version: int, error_code: str, error: str) -> dict | None:
    """processing -> failed with a short, safe error."""
    return _row(
        conn.execute(
            _FINISH_WITHOUT_RESULTS,
            {
                "job_id": job_id,
                "token": token,
                "version": version,
                "status": "failed",
                "error": error,
                "error_code": error_code,
                "detail": json.dumps({"error_code": error_code}),
            },
        )
    )


def mark_cancelled(conn: sa.Connection, job_id: str, token: str, version: int) -> dict | None:
    """processing -> cancelled, by the worker that saw the cancel request at a progress step."""
    return _row(
        conn.execute(
            _FINISH_WITHOUT_RESULTS,
            {
                "job_id": job_id,
                "token": token,
                "version": version,
                "status": "cancelled",
                "error": None,
                "error_code": None,
                "detail": json.dumps({"by": "worker"}),
            },
        )
    )


_REQUEUE = QUERIES["requeue"]


def requeue(
    conn: sa.Connection, job_id: str, token: str, version: int, *, delay: float, reason: str,
    error_code: str | None = None, error: str | None = None,
) -> dict | None:
    """processing -> pending (a retry, a graceful shutdown), by the attempt itself; progress is kept.

    The token stays on the row until the next claim, so the attempt can tell its
    own requeue (landed before a dropped answer) from anyone else's change.
    """
    return _row(
        conn.execute(
            _REQUEUE,
            {
                "job_id": job_id,
                "token": token,
                "version": version,
                "delay": float(delay),
                "error": error,
                "error_code": error_code,
                "detail": json.dumps({"reason": reason, "error_code": error_code, "delay_s": round(delay, 2)}),
            },
        )
    )


_RENEW_LEASE = QUERIES["renew_lease"]


def renew_lease(conn: sa.Connection, job_id: str, token: str, lease_seconds: float) -> bool:
    """Heartbeat: keep this attempt's lease alive. Not a state change, so no version bump.

    False: the attempt no longer owns the job (finished, requeued by the reconciler, retried, gone).
    """
    result = conn.execute(_RENEW_LEASE, {"job_id": job_id, "token": token, "lease": float(lease_seconds)})
    return result.rowcount == 1


_CANCEL_PENDING = QUERIES["cancel_pending"]
_REQUEST_CANCEL = QUERIES["request_cancel"]


def cancel(conn: sa.Connection, job_id: str) -> dict:
    """Cancel a job: a pending one at once; a running one at its next progress step.

    Raises InvalidTransition (with the current row) for a finished job.
    """
    row = _row(conn.execute(_CANCEL_PENDING, {"job_id": job_id, "detail": json.dumps({"by": "client"})}))
    if row is None:
        row = _row(conn.execute(_REQUEST_CANCEL, {"job_id": job_id}))
    if row is None:
        current = get(conn, job_id)
        if current is None:
            raise NotFound("job disappeared")
        raise InvalidTransition(f"the job is already {current['status']}", current)
    return row


_RETRY_FAILED = QUERIES["retry_failed"]


def retry_failed(conn: sa.Connection, job_id: str) -> dict:
    """failed/cancelled -> pending, by an operator or the owner. Raises InvalidTransition otherwise."""
    row = _row(conn.execute(_RETRY_FAILED, {"job_id": job_id, "detail": json.dumps({"reason": "manual"})}))
    if row is None:
        current = get(conn, job_id)
        if current is None:
            raise NotFound("job disappeared")
        raise InvalidTransition(f"only failed or cancelled jobs can be retried; this one is {current['status']}",
                                current)
    return row


# -- reconciler -----------------------------------------------------------

_EXPIRED_LEASES = QUERIES["expire_leases"]


def expire_leases(conn: sa.Connection, max_attempts: int) -> list[dict]:
    """Processing jobs whose worker stopped renewing the lease go back to pending (or fail for good)."""
    return [dict(r) for r in conn.execute(_EXPIRED_LEASES, {"max_attempts": max_attempts}).mappings()]


_DUE_PENDING = QUERIES["due_pending"]


def due_pending(conn: sa.Connection, grace_seconds: float, limit: int, after_id: int = 0) -> list[dict]:
    """Pending jobs that should be waiting in Redis by now: submitted over `grace` ago, or retries now due.

    Oldest first, one page of `limit` after the row id `after_id` (keyset paging).
    """
    params = {"grace": float(grace_seconds), "limit": limit, "after_id": after_id}
    return [dict(r) for r in conn.execute(_DUE_PENDING, params).mappings()]


_PENDING_DUE_SINCE = QUERIES["pending_due_since"]


def pending_due_since(conn: sa.Connection, since: datetime, grace_seconds: float, limit: int,
                      after_id: int = 0) -> list[dict]:
    """The due pending jobs (as `due_pending`) that became due or changed at or after `since` (Postgres time).

    One page of `limit` after the row id `after_id` (keyset paging).
    """
    params = {"since": since, "grace": float(grace_seconds), "limit": limit, "after_id": after_id}
    return [dict(r) for r in conn.execute(_PENDING_DUE_SINCE, params).mappings()]


_CHANGED_SINCE = QUERIES["changed_since"]


def changed_since(conn: sa.Connection, since: datetime, limit: int, after_id: int = 0) -> list[dict]:
    """Rows changed at or after `since` (Postgres time), one page in row-id order (the reconciler's view refresh)."""
    params = {"since": since, "limit": limit, "after_id": after_id}
    return [dict(r) for r in conn.execute(_CHANGED_SINCE, params).mappings()]


_DELETED_SINCE = QUERIES["deleted_since"]
_FORGET_DELETIONS = QUERIES["forget_deletions"]


def deleted_since(conn: sa.Connection, since: datetime) -> list[dict]:
    """Jobs deleted at or after `since`: (job_id, result_token_hash), for the reconciler's tombstones."""
    rows = conn.execute(_DELETED_SINCE, {"since": since})
    return [dict(r) for r in rows.mappings()]


def forget_deletions(conn: sa.Connection, older_than_seconds: float) -> int:
    """Drop deletion records older than a cache lifetime: no view of those jobs can be left in Redis."""
    result = conn.execute(_FORGET_DELETIONS, {"age": float(older_than_seconds)})
    return result.rowcount


# -- reads ----------------------------------------------------------------

_EVENTS_AFTER = QUERIES["events"]


def events(conn: sa.Connection, job_id: str, after: int = 0, limit: int = 1000) -> list[dict]:
    return [dict(r) for r in conn.execute(_EVENTS_AFTER, {"job_id": job_id, "after": after, "limit": limit}).mappings()]


_CHANGES = QUERIES["changes"]
_CHANGES_AFTER_EVENT_ID = QUERIES["changes_after_event_id"]


def changes(conn: sa.Connection, after: tuple[int, int] | int, limit: int, client_id: int | None,
            admin: bool) -> list[dict]:
    """The change feed: events of every visible job after a cursor, in (transaction, id) order.

    Only events of transactions older than every transaction still running are
    returned (tx_id below the snapshot's xmin): all of those have ended, and any
    event that becomes visible later belongs to a transaction at or above xmin,
    so it sorts after every event returned so far. A client that keeps the last
    (tx_id, id) it saw never misses an event, whatever order transactions commit in.

    `after` as a bare event id is the earlier cursor form: it starts just before the oldest
    transaction of any later event, so nothing after it is skipped (a few events may come twice).
    """
    params = {"admin": bool(admin), "client_id": client_id, "limit": limit}
    if isinstance(after, tuple):
        stmt, params = _CHANGES, params | {"after_tx": after[0], "after_id": after[1]}
    else:
        stmt, params = _CHANGES_AFTER_EVENT_ID, params | {"after_id": after}
    return [dict(r) for r in conn.execute(stmt, params).mappings()]


_LIST_JOBS = QUERIES["list_jobs"]


def list_jobs(
    conn: sa.Connection, *, status: str | None, limit: int, before_id: int | None,
    client_id: int | None, admin: bool,
) -> list[dict]:
    """Newest first, keyset-paginated on the primary key (no OFFSET)."""
    params = {"admin": bool(admin), "client_id": client_id, "status": status or None, "before_id": before_id,
              "limit": limit}
    return [dict(r) for r in conn.execute(_LIST_JOBS, params).mappings()]


_COUNTS_BY_STATUS = QUERIES["counts_by_status"]


def counts_by_status(conn: sa.Connection, since: datetime) -> dict[str, int]:
    rows = conn.execute(_COUNTS_BY_STATUS, {"since": since})
    return {status: n for status, n in rows}


_DELETE = QUERIES["delete"]
_DELETE_IMAGE = QUERIES["delete_image"]


def delete(conn: sa.Connection, job_id: str) -> dict[str, Any] | None:
    """Delete a job with its events, outbox rows (cascade) and uploaded image; remember the deletion."""
    row = _row(conn.execute(_DELETE, {"job_id": job_id}))
    if row and row["image_id"] is not None:
        conn.execute(_DELETE_IMAGE, {"id": row["image_id"]})
    return row


_UNFINISHED = QUERIES["unfinished_summary"]


def unfinished_summary(conn: sa.Connection) -> dict[str, dict]:
    """{"pending"|"processing": {"count", "oldest_age_s"}} from Postgres (the truth about what is left to do)."""
    found = {r["status"]: r for r in conn.execute(_UNFINISHED).mappings()}
    return {status: {"count": found[status]["n"] if status in found else 0,
                     "oldest_age_s": float(found[status]["oldest_s"]) if status in found else None}
            for status in ("pending", "processing")}


# -- cleanup --------------------------------------------------------------

_COUNT_EXPIRED = QUERIES["count_expired"]
_DELETE_EXPIRED_BATCH = QUERIES["delete_expired_batch"]


def count_expired(conn: sa.Connection, cutoff: datetime) -> dict:
    """What the retention period removes: finished jobs created before `cutoff`, with their events,
    outbox rows and uploaded images ({"jobs", "events", "notifications", "images"})."""
    return dict(conn.execute(_COUNT_EXPIRED, {"cutoff": cutoff}).mappings().one())


def delete_expired_batch(conn: sa.Connection, cutoff: datetime, batch: int) -> dict:
    """Delete up to `batch` of those jobs, oldest first, remembering each deletion: {"jobs", "images",
    "job_ids", "token_hashes"} (the last two in the same order, for the cache's tombstones)."""
    return dict(conn.execute(_DELETE_EXPIRED_BATCH, {"cutoff": cutoff, "batch": batch}).mappings().one())
