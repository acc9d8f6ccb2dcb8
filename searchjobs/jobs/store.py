"""Queries on search_jobs and search_job_events.

Every state change is a single SQL statement: the job UPDATE and its event
INSERT travel together in one CTE, so each step is atomic and costs one round
trip on an autocommit connection. Every change is version-checked: it names the
version it read, bumps it, and touches nothing if someone else moved first.

Every write of a worker's attempt is also fenced: a claim draws a fresh
`claim_token` (a UUID), and each write of that attempt names it. The reconciler
and a manual retry clear it, so no later attempt (not even one with the same
`attempts` count after a retry reset it) can be taken for this one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from searchjobs import defaults
from searchjobs.errors import Conflict, NotFound

# Columns every statement returns: enough to build the cached public view.
JOB_COLUMNS = (
    "id, job_id, status, progress, stage, version, attempts, phone_number, country_code, categories, "
    "original_image_url, image_id, results, meta, error, error_code, client_id, worker_name, "
    "lease_expires_at, run_after, cancel_requested, created_at, updated_at, started_at, finished_at, "
    "claim_token::text AS claim_token"
)
# The fence every write of an attempt carries (see the module docstring).
_FENCE = "claim_token = CAST(:token AS uuid)"


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


def _event_insert(kind: str, detail_param: str = ":detail") -> str:
    """An INSERT of one event from the CTE `j` (the row just written)."""
    return (
        "INSERT INTO search_job_events (job_id, kind, status, progress, stage, version, attempt, detail) "
        f"SELECT job_id, '{kind}', status, progress, stage, version, attempts, CAST({detail_param} AS jsonb) FROM j"
    )


_CREATE = sa.text(
    f"""
    WITH j AS (
        INSERT INTO search_jobs (job_id, status, progress, stage, categories, image_id, original_image_url,
                                 phone_number, country_code, client_id, idempotency_key, request_hash,
                                 result_token_hash, meta)
        VALUES (:job_id, 'pending', 0, 'queued', :categories, :image_id, :original_image_url,
                :phone_number, :country_code, :client_id, :idempotency_key, :request_hash,
                :result_token_hash, CAST(:meta AS jsonb))
        ON CONFLICT (coalesce(client_id, 0), idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
        RETURNING {JOB_COLUMNS}
    ), e AS ({_event_insert('created')})
    SELECT *, true AS created FROM j
    """
)

# The unique index on (client, key) has no time limit: a key past the window is
# cleared from its old job just before the insert, in the same transaction.
_RELEASE_EXPIRED_KEY = sa.text(
    "UPDATE search_jobs SET idempotency_key = NULL "
    "WHERE coalesce(client_id, 0) = coalesce(:client_id, 0) AND idempotency_key = :key "
    "AND created_at < now() - make_interval(hours => :hours)"
)

_BY_IDEMPOTENCY_KEY = sa.text(
    f"SELECT {JOB_COLUMNS}, request_hash, false AS created FROM search_jobs "
    "WHERE coalesce(client_id, 0) = coalesce(:client_id, 0) AND idempotency_key = :key"
)


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


_GET = sa.text(f"SELECT {JOB_COLUMNS} FROM search_jobs WHERE job_id = :job_id")
_GET_BY_TOKEN = sa.text(f"SELECT {JOB_COLUMNS} FROM search_jobs WHERE result_token_hash = :token_hash")


def get(conn: sa.Connection, job_id: str) -> dict | None:
    return _row(conn.execute(_GET, {"job_id": job_id}))


def get_by_token_hash(conn: sa.Connection, token_hash: str) -> dict | None:
    return _row(conn.execute(_GET_BY_TOKEN, {"token_hash": token_hash}))


_CLAIM = sa.text(
    f"""
    WITH j AS (
        UPDATE search_jobs
           SET status = 'processing', attempts = attempts + 1, worker_name = :worker,
               stage = 'claimed', progress = GREATEST(progress, :progress),
               started_at = coalesce(started_at, now()), updated_at = now(),
               lease_expires_at = now() + make_interval(secs => :lease), run_after = NULL,
               claim_token = CAST(:token AS uuid), version = version + 1
         WHERE job_id = :job_id AND status = 'pending' AND NOT cancel_requested
        RETURNING {JOB_COLUMNS}
    ), e AS ({_event_insert('claimed')})
    SELECT * FROM j
    """
)


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


_PROGRESS = sa.text(
    f"""
    WITH j AS (
        UPDATE search_jobs
           SET progress = GREATEST(progress, :progress), stage = :stage, updated_at = now(),
               lease_expires_at = now() + make_interval(secs => :lease), version = version + 1
         WHERE job_id = :job_id AND version = :version AND status = 'processing' AND {_FENCE}
        RETURNING {JOB_COLUMNS}
    ), e AS ({_event_insert('progress')})
    SELECT * FROM j
    """
)
# The same step committed without waiting for the WAL flush (still one message, one round trip: the
# SET LOCAL and the statement run as one implicit transaction). Visible at once, but a crash of the
# Postgres host can lose the last ~0.6 s of such steps; terminal states, results and the SMS outbox
# never use it. Opt-in: SEARCHJOBS_PROGRESS_COMMIT=fast (measured in bench/throughput.py).
_PROGRESS_FAST = sa.text("SET LOCAL synchronous_commit = off; " + _PROGRESS.text)


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


_COMPLETE = sa.text(
    f"""
    WITH j AS (
        UPDATE search_jobs
           SET status = 'completed', progress = 100, stage = 'done', results = CAST(:results AS jsonb),
               finished_at = now(), updated_at = now(), lease_expires_at = NULL, error = NULL,
               error_code = NULL, version = version + 1
         WHERE job_id = :job_id AND version = :version AND status = 'processing' AND NOT cancel_requested
           AND {_FENCE}
        RETURNING {JOB_COLUMNS}
    ), e AS ({_event_insert('completed')}),
    n AS (
        INSERT INTO notifications (job_id, kind, channel, to_number, body, status, next_attempt_at)
        SELECT job_id, 'results_ready', 'sms', phone_number, :sms_body, 'pending', now() FROM j
         WHERE j.phone_number IS NOT NULL AND :sms_body IS NOT NULL
        ON CONFLICT (job_id, kind) DO NOTHING
        RETURNING id
    )
    SELECT j.*, (SELECT id FROM n) AS notification_id FROM j
    """
)


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


_FINISH_WITHOUT_RESULTS = sa.text(
    f"""
    WITH j AS (
        UPDATE search_jobs
           SET status = :status, error = :error, error_code = :error_code, finished_at = now(),
               updated_at = now(), lease_expires_at = NULL, version = version + 1
         WHERE job_id = :job_id AND version = :version AND status = 'processing' AND {_FENCE}
        RETURNING {JOB_COLUMNS}
    ), e AS (
        INSERT INTO search_job_events (job_id, kind, status, progress, stage, version, attempt, detail)
        SELECT job_id, :status, status, progress, stage, version, attempts, CAST(:detail AS jsonb) FROM j
    )
    SELECT * FROM j
    """
)


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


_REQUEUE = sa.text(
    f"""
    WITH j AS (
        UPDATE search_jobs
           SET status = 'pending', stage = 'queued', worker_name = NULL, lease_expires_at = NULL,
               run_after = now() + make_interval(secs => :delay), updated_at = now(),
               error = :error, error_code = :error_code, version = version + 1
         WHERE job_id = :job_id AND version = :version AND status = 'processing' AND {_FENCE}
        RETURNING {JOB_COLUMNS}
    ), e AS ({_event_insert('retried')})
    SELECT * FROM j
    """
)


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


_RENEW_LEASE = sa.text(
    "UPDATE search_jobs SET lease_expires_at = now() + make_interval(secs => :lease) "
    f"WHERE job_id = :job_id AND status = 'processing' AND {_FENCE}"
)


def renew_lease(conn: sa.Connection, job_id: str, token: str, lease_seconds: float) -> bool:
    """Heartbeat: keep this attempt's lease alive. Not a state change, so no version bump.

    False: the attempt no longer owns the job (finished, requeued by the reconciler, retried, gone).
    """
    result = conn.execute(_RENEW_LEASE, {"job_id": job_id, "token": token, "lease": float(lease_seconds)})
    return result.rowcount == 1


_CANCEL_PENDING = sa.text(
    f"""
    WITH j AS (
        UPDATE search_jobs
           SET status = 'cancelled', cancel_requested = true, finished_at = now(), updated_at = now(),
               claim_token = NULL, version = version + 1
         WHERE job_id = :job_id AND status = 'pending'
        RETURNING {JOB_COLUMNS}
    ), e AS ({_event_insert('cancelled')})
    SELECT * FROM j
    """
)
# The version moves so the cached view shows the request; the running attempt then
# finds its version stale at its next write, sees cancel_requested and stops.
_REQUEST_CANCEL = sa.text(
    f"UPDATE search_jobs SET cancel_requested = true, updated_at = now(), version = version + 1 "
    f"WHERE job_id = :job_id AND status = 'processing' RETURNING {JOB_COLUMNS}"
)


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


_RETRY_FAILED = sa.text(
    f"""
    WITH j AS (
        UPDATE search_jobs
           SET status = 'pending', stage = 'queued', error = NULL, error_code = NULL, finished_at = NULL,
               attempts = 0, run_after = NULL, cancel_requested = false, updated_at = now(),
               claim_token = NULL, version = version + 1
         WHERE job_id = :job_id AND status IN ('failed', 'cancelled')
        RETURNING {JOB_COLUMNS}
    ), e AS ({_event_insert('retried')})
    SELECT * FROM j
    """
)


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

# A job whose worker is gone: cancelled if the client asked for it, failed once its
# attempts are used up, else pending and due at once (run_after = now(), so the same
# reconciler pass enqueues it instead of waiting out the pending grace).
_EXPIRED_LEASES = sa.text(
    f"""
    WITH j AS (
        UPDATE search_jobs
           SET status = CASE WHEN cancel_requested THEN 'cancelled'
                             WHEN attempts >= :max_attempts THEN 'failed' ELSE 'pending' END,
               error_code = CASE WHEN cancel_requested THEN error_code
                                 WHEN attempts >= :max_attempts THEN 'worker_lost' ELSE error_code END,
               error = CASE WHEN cancel_requested THEN error
                            WHEN attempts >= :max_attempts THEN 'the job lost its worker too many times'
                            ELSE error END,
               finished_at = CASE WHEN cancel_requested OR attempts >= :max_attempts THEN now() ELSE NULL END,
               stage = CASE WHEN cancel_requested OR attempts >= :max_attempts THEN stage ELSE 'queued' END,
               run_after = CASE WHEN cancel_requested OR attempts >= :max_attempts THEN NULL ELSE now() END,
               worker_name = NULL, lease_expires_at = NULL, claim_token = NULL, updated_at = now(),
               version = version + 1
         WHERE status = 'processing' AND lease_expires_at < now()
        RETURNING {JOB_COLUMNS}
    ), e AS (
        INSERT INTO search_job_events (job_id, kind, status, progress, stage, version, attempt, detail)
        SELECT job_id, CASE WHEN status = 'pending' THEN 'retried' ELSE status END, status, progress, stage,
               version, attempts, '{{"reason": "lease_expired"}}'::jsonb FROM j
    )
    SELECT * FROM j
    """
)


def expire_leases(conn: sa.Connection, max_attempts: int) -> list[dict]:
    """Processing jobs whose worker stopped renewing the lease go back to pending (or fail for good)."""
    return [dict(r) for r in conn.execute(_EXPIRED_LEASES, {"max_attempts": max_attempts}).mappings()]


_DUE_PENDING = sa.text(
    """
    SELECT id, job_id, attempts, run_after FROM search_jobs
     WHERE status = 'pending' AND NOT cancel_requested AND id > :after_id
       AND CASE WHEN run_after IS NULL THEN updated_at < now() - make_interval(secs => :grace)
                ELSE run_after <= now() END
     ORDER BY id
     LIMIT :limit
    """
)


def due_pending(conn: sa.Connection, grace_seconds: float, limit: int, after_id: int = 0) -> list[dict]:
    """Pending jobs that should be waiting in Redis by now: submitted over `grace` ago, or retries now due.

    Oldest first, one page of `limit` after the row id `after_id` (keyset paging).
    """
    params = {"grace": float(grace_seconds), "limit": limit, "after_id": after_id}
    return [dict(r) for r in conn.execute(_DUE_PENDING, params).mappings()]


_CHANGED_SINCE = sa.text(
    f"SELECT {JOB_COLUMNS} FROM search_jobs WHERE updated_at >= :since AND id > :after_id ORDER BY id LIMIT :limit"
)


def changed_since(conn: sa.Connection, since: datetime, limit: int, after_id: int = 0) -> list[dict]:
    """Rows changed at or after `since` (Postgres time), one page in row-id order (the reconciler's view refresh)."""
    params = {"since": since, "limit": limit, "after_id": after_id}
    return [dict(r) for r in conn.execute(_CHANGED_SINCE, params).mappings()]


def deleted_since(conn: sa.Connection, since: datetime) -> list[dict]:
    """Jobs deleted at or after `since`: (job_id, result_token_hash), for the reconciler's tombstones."""
    rows = conn.execute(sa.text("SELECT job_id, result_token_hash FROM job_deletions WHERE deleted_at >= :since"),
                        {"since": since})
    return [dict(r) for r in rows.mappings()]


def forget_deletions(conn: sa.Connection, older_than_seconds: float) -> int:
    """Drop deletion records older than a cache lifetime: no view of those jobs can be left in Redis."""
    result = conn.execute(
        sa.text("DELETE FROM job_deletions WHERE deleted_at < now() - make_interval(secs => :age)"),
        {"age": float(older_than_seconds)})
    return result.rowcount


# -- reads ----------------------------------------------------------------

_EVENTS_AFTER = sa.text(
    "SELECT id, job_id, kind, status, progress, stage, version, attempt, detail, created_at "
    "FROM search_job_events WHERE job_id = :job_id AND id > :after ORDER BY id LIMIT :limit"
)


def events(conn: sa.Connection, job_id: str, after: int = 0, limit: int = 1000) -> list[dict]:
    return [dict(r) for r in conn.execute(_EVENTS_AFTER, {"job_id": job_id, "after": after, "limit": limit}).mappings()]


# the oldest transaction still running, as the bigint `tx_id` holds (xid8 without its epoch games)
_XMIN = "(pg_snapshot_xmin(pg_current_snapshot())::text)::bigint"


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
    where = "" if admin else (
        "AND j.client_id = :client_id" if client_id is not None else "AND false"
    )
    if isinstance(after, tuple):
        position, params = "(e.tx_id, e.id) > (:after_tx, :after_id)", {"after_tx": after[0], "after_id": after[1]}
    else:
        position = ("(e.tx_id, e.id) > ((SELECT coalesce(min(tx_id), " + _XMIN + ") - 1 "
                    "FROM search_job_events WHERE id > :after_id), 0)")
        params = {"after_id": after}
    stmt = sa.text(
        "SELECT e.id, e.tx_id, e.job_id, e.kind, e.status, e.progress, e.stage, e.version, e.attempt, e.created_at "
        "FROM search_job_events e JOIN search_jobs j ON j.job_id = e.job_id "
        f"WHERE {position} {where} "
        f"AND e.tx_id < {_XMIN} ORDER BY e.tx_id, e.id LIMIT :limit"
    )
    params |= {"limit": limit, "client_id": client_id}
    return [dict(r) for r in conn.execute(stmt, params).mappings()]


def list_jobs(
    conn: sa.Connection, *, status: str | None, limit: int, before_id: int | None,
    client_id: int | None, admin: bool,
) -> list[dict]:
    """Newest first, keyset-paginated on the primary key (no OFFSET)."""
    clauses, params = [], {"limit": limit}
    if not admin:
        clauses.append("client_id = :client_id" if client_id is not None else "false")
        params["client_id"] = client_id
    if status:
        clauses.append("status = :status")
        params["status"] = status
    if before_id is not None:
        clauses.append("id < :before_id")
        params["before_id"] = before_id
    where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
    stmt = sa.text(f"SELECT {JOB_COLUMNS} FROM search_jobs {where} ORDER BY id DESC LIMIT :limit")
    return [dict(r) for r in conn.execute(stmt, params).mappings()]


def counts_by_status(conn: sa.Connection, since: datetime) -> dict[str, int]:
    rows = conn.execute(
        sa.text("SELECT status, count(*) FROM search_jobs WHERE created_at >= :since GROUP BY status"),
        {"since": since},
    )
    return {status: n for status, n in rows}


# The deletion is remembered (job_deletions) so the reconciler can re-write a tombstone Redis refused.
_DELETE = sa.text(
    """
    WITH gone AS (
        DELETE FROM search_jobs WHERE job_id = :job_id RETURNING job_id, image_id, result_token_hash
    ), remembered AS (
        INSERT INTO job_deletions (job_id, result_token_hash) SELECT job_id, result_token_hash FROM gone
        ON CONFLICT (job_id) DO NOTHING
    )
    SELECT * FROM gone
    """
)


def delete(conn: sa.Connection, job_id: str) -> dict[str, Any] | None:
    """Delete a job with its events, outbox rows (cascade) and uploaded image; remember the deletion."""
    row = _row(conn.execute(_DELETE, {"job_id": job_id}))
    if row and row["image_id"] is not None:
        conn.execute(sa.text("DELETE FROM images WHERE id = :id"), {"id": row["image_id"]})
    return row


_UNFINISHED = sa.text(
    "SELECT status, count(*) AS n, extract(epoch FROM now() - min(created_at)) AS oldest_s "
    "FROM search_jobs WHERE status IN ('pending', 'processing') GROUP BY status"
)


def unfinished_summary(conn: sa.Connection) -> dict[str, dict]:
    """{"pending"|"processing": {"count", "oldest_age_s"}} from Postgres (the truth about what is left to do)."""
    found = {r["status"]: r for r in conn.execute(_UNFINISHED).mappings()}
    return {status: {"count": found[status]["n"] if status in found else 0,
                     "oldest_age_s": float(found[status]["oldest_s"]) if status in found else None}
            for status in ("pending", "processing")}
