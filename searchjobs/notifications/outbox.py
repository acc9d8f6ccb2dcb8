"""Queries on the SMS outbox (`notifications`).

Statuses:
- `pending`: not sent, and nothing sent before can still land: the next try sends (a send refused
  for our credentials waits here, paused);
- `sending`: a sender holds the row (claimed); one left longer than the stale time was a killed (or
  frozen) sender's;
- `unknown`: a send may have reached the provider; the next try looks it up first, and only once that
  request can no longer land. With no next attempt (`next_attempt_at` NULL) the row is *parked*: the
  look-up kept failing until the deadline, and an operator decides (`searchjobs sms retry`);
- `sent` -> `delivered` | `undelivered` | `failed` by delivery reports; `failed` also means rejected by
  the provider, or given up at the deadline with nothing sent.
A claim is atomic, but it is a lease, not a lock: a sender frozen longer than the stale time still
thinks it holds the row when another has re-claimed it. So every write of a try names its claim
(`attempts`) and changes nothing once a newer claim exists; and the send itself, which no row can
fence, is bounded instead: `mark_sending` records `may_land_until`, the time after which the request
it announces can no longer land, and the sender makes no request that would start later than the grace
that time assumes. A look-up is conclusive only after `may_land_until`.

The SQL is in outbox.sql, beside this module.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from searchjobs import defaults
from searchjobs.db import sql

QUERIES = sql.load(__file__)

# Delivery statuses from the provider, in the order they can only move forward.
PROVIDER_STATUS_RANK = {"accepted": 1, "queued": 1, "sending": 2, "sent": 3, "delivered": 4, "undelivered": 4,
                        "failed": 4, "canceled": 4, "read": 5}
# Our row status for each provider status; anything not listed means "sent" (accepted, on its way).
# "read" comes after "delivered" (it must not move the row back to "sent"); "canceled" was never sent.
TERMINAL_PROVIDER_STATUSES = {"delivered": "delivered", "undelivered": "undelivered", "failed": "failed",
                              "canceled": "failed", "read": "delivered"}

_CLAIM = QUERIES["claim"]


def claim(conn: sa.Connection, notification_id: int, stale_after: float, *,
          give_up_after: float = defaults.SMS_GIVE_UP_HOURS * 3600,
          retention_days: int = defaults.RETENTION_DAYS) -> dict | None:
    """Take the row for one send attempt; None if it is not due, already done, or someone else holds it.

    `previous_status` tells whether an earlier attempt may have reached the provider ('unknown', or
    'sending' left behind by a killed sender: then `last_send_at` says when its request was recorded, and
    `may_land_until` until when it may still land).
    The first claim sets the deadline `give_up_at`: `give_up_after` seconds after the row was written,
    never past the job's retention. `db_now` is the database's clock, which every deadline is on.
    """
    row = conn.execute(_CLAIM, {"id": notification_id, "stale_after": float(stale_after),
                                "give_up_after": float(give_up_after),
                                "retention_days": int(retention_days)}).mappings().first()
    return dict(row) if row else None


_MARK_SENDING = QUERIES["mark_sending"]


def mark_sending(conn: sa.Connection, notification_id: int, attempt: int, body_sha256: str, *,
                 may_land_for: float) -> bool:
    """Just before a create request: record when it starts, until when it may land, and the body's hash.

    Committed before the request, so whoever finds the row later (a killed or frozen sender's re-claim)
    knows until when this request may still land: `may_land_until` = now + `may_land_for` (the
    sender's start grace, its connect and read timeouts, the provider's margin), by the settings of
    the process that sends, so a worker with shorter timeouts cannot shorten it. It only moves later.
    False if the claim `attempt` is no longer current (a newer claim took the row): then this attempt
    must not send.
    """
    result = conn.execute(
        _MARK_SENDING,
        {"id": notification_id, "attempt": attempt, "hash": body_sha256, "land": float(may_land_for)},
    )
    return result.rowcount > 0


_MARK_SENT = QUERIES["mark_sent"]


def mark_sent(conn: sa.Connection, notification_id: int, provider: str, sid: str, provider_status: str) -> None:
    """Record the provider's message, and a `notified` event on the job's activity log.

    The row's status follows the provider's: a message adopted by a look-up may already be
    `delivered`, `undelivered` or `failed` there (its delivery report came while we did not know
    its sid); anything else is `sent`.
    Not fenced by attempt: any claim's sid is the truth about what was sent (a sender presumed dead
    whose answer came late may record it while the row waits, `unknown`, for its look-up).
    """
    status = TERMINAL_PROVIDER_STATUSES.get(provider_status, "sent")
    conn.execute(
        _MARK_SENT,
        {"id": notification_id, "status": status, "provider": provider, "sid": sid, "pstatus": provider_status},
    )


_MARK_RETRY = QUERIES["mark_retry"]


def mark_retry(conn: sa.Connection, notification_id: int, attempt: int, *, status: str, delay: float | None,
               error_code: str | None, error_message: str, may_land_for: float | None = None,
               give_up_at: datetime | None = None, due_at: datetime | None = None) -> bool:
    """Back to `pending` (definitely not sent) or `unknown` (may have been sent), due again after `delay`.

    - `due_at` instead of `delay`: due again at that time of the database's clock, exactly (a delay counts
      from this statement's start, which comes later than a time the caller read);
    - `delay=None` (and no `due_at`) parks an `unknown` row: no next attempt, an operator decides;
    - `may_land_for`: the request just given up on may still land for this many seconds from now
      (counted from when its failure is recorded, so a request that started late cannot shorten it):
      `may_land_until` moves to at least now + this;
    - an `unknown` row is never due before `may_land_until` (the look-up waits until the last request
      can no longer land);
    - `give_up_at`: a new deadline (a pause for refused credentials moves it on).

    Only for the claim numbered `attempt`: a sender presumed dead (its row re-claimed after
    STALE_SENDING_SECONDS) must not put a newer attempt's row back to `pending`, which would
    make the next try send without looking the message up first.
    """
    assert status in ("pending", "unknown")
    assert delay is None or due_at is None, "a delay or a due time, not both"
    assert delay is not None or due_at is not None or status == "unknown", "only an unknown outcome is parked"
    result = conn.execute(
        _MARK_RETRY,
        {"id": notification_id, "attempt": attempt, "status": status, "due_at": due_at,
         "delay": None if delay is None else float(delay),
         "land": float(may_land_for) if may_land_for is not None else None,
         "give_up_at": give_up_at, "code": error_code, "message": error_message[:300]},
    )
    return result.rowcount > 0


_MARK_FAILED = QUERIES["mark_failed"]


def mark_failed(conn: sa.Connection, notification_id: int, attempt: int, error_code: str | None,
                error_message: str) -> None:
    """Nothing was sent and nothing will be: rejected, or given up. The job stays completed. Only for `attempt`."""
    conn.execute(
        _MARK_FAILED,
        {"id": notification_id, "attempt": attempt, "code": error_code, "message": error_message[:300]},
    )


_APPLY_PROVIDER_STATUS = QUERIES["apply_provider_status"]


def apply_provider_status(conn: sa.Connection, sid: str, provider_status: str, error_code: str | None) -> bool:
    """A delivery report: moves forward only (reports arrive out of order and twice)."""
    rank = PROVIDER_STATUS_RANK.get(provider_status)
    if rank is None:
        return False
    new_status = TERMINAL_PROVIDER_STATUSES.get(provider_status, "sent")
    result = conn.execute(
        _APPLY_PROVIDER_STATUS,
        {"sid": sid, "pstatus": provider_status, "status": new_status, "rank": rank, "code": error_code},
    )
    return result.rowcount > 0


_HAS_PROVIDER_SID = QUERIES["has_provider_sid"]


def has_provider_sid(conn: sa.Connection, sid: str) -> bool:
    """True if an outbox row carries this provider message sid (tells an unknown sid from a stale report)."""
    return conn.execute(_HAS_PROVIDER_SID, {"sid": sid}).first() is not None


_DUE = QUERIES["due"]


def due(conn: sa.Connection, stale_after: float, limit: int = 500) -> list[int]:
    """Rows the scheduler should (re-)enqueue: due pending/unknown ones (not parked ones), and sends left
    by a killed sender."""
    rows = conn.execute(
        _DUE,
        {"stale_after": float(stale_after), "limit": limit},
    )
    return [r[0] for r in rows]


_GET = QUERIES["get"]


def get(conn: sa.Connection, notification_id: int) -> dict | None:
    row = conn.execute(_GET, {"id": notification_id}).mappings().first()
    return dict(row) if row else None


_LIST_ROWS = QUERIES["list_rows"]


def list_rows(conn: sa.Connection, status: str | None = None, limit: int = 50) -> list[dict]:
    """The newest outbox rows, optionally of one status."""
    rows = conn.execute(
        _LIST_ROWS,
        {"status": status, "limit": limit},
    )
    return [dict(r) for r in rows.mappings()]


def is_parked(row: dict) -> bool:
    """An unknown outcome no try will look up again: an operator decides."""
    return row["status"] == "unknown" and row["next_attempt_at"] is None


_REQUEUE = QUERIES["requeue"]


def requeue(conn: sa.Connection, *, notification_id: int | None = None, all_failed: bool = False,
            give_up_after: float = defaults.SMS_GIVE_UP_HOURS * 3600,
            retention_days: int = defaults.RETENTION_DAYS) -> list[int]:
    """An operator's retry: back to `pending`, due now, with a new deadline; returns the ids changed.

    One row by id (failed, or parked unknown: the operator checked the provider console), or every
    failed row the provider never accepted (`all_failed`; a message it accepted and the carrier failed
    is retried by id only). The send that follows does not look the message up first.
    """
    assert (notification_id is None) != (not all_failed), "one row by id, or all_failed"
    rows = conn.execute(
        _REQUEUE,
        {"id": notification_id, "all_failed": bool(all_failed), "give_up_after": float(give_up_after),
         "retention_days": int(retention_days)},
    )
    return sorted(r[0] for r in rows)


_FOR_JOB = QUERIES["for_job"]


def for_job(conn: sa.Connection, job_id: str) -> list[dict]:
    rows = conn.execute(_FOR_JOB, {"j": job_id})
    return [dict(r) for r in rows.mappings()]


_COUNTS_BY_STATUS = QUERIES["counts_by_status"]


def counts_by_status(conn: sa.Connection) -> dict[str, int]:
    return dict(conn.execute(_COUNTS_BY_STATUS).all())
