"""Queries on the SMS outbox (`notifications`).

A row moves pending -> sending -> sent -> delivered|undelivered|failed; a send
whose outcome is unknown goes to `unknown` and is looked up at the provider
before any new try. Claims are atomic, so two senders never work on one row.
"""

from __future__ import annotations

import sqlalchemy as sa

COLUMNS = (
    "id, job_id, kind, channel, to_number, body, status, provider, provider_sid, provider_status, attempts, "
    "last_error_code, last_error_message, first_attempt_at, next_attempt_at, claimed_at, created_at, "
    "updated_at, sent_at, delivered_at"
)

# Delivery statuses from the provider, in the order they can only move forward.
PROVIDER_STATUS_RANK = {"accepted": 1, "queued": 1, "sending": 2, "sent": 3, "delivered": 4, "undelivered": 4,
                        "failed": 4, "canceled": 4, "read": 5}
# Our row status for each provider status; anything not listed means "sent" (accepted, on its way).
# "read" comes after "delivered" (it must not move the row back to "sent"); "canceled" was never sent.
TERMINAL_PROVIDER_STATUSES = {"delivered": "delivered", "undelivered": "undelivered", "failed": "failed",
                              "canceled": "failed", "read": "delivered"}

_CLAIM = sa.text(
    f"""
    WITH prev AS (SELECT id, status FROM notifications WHERE id = :id FOR UPDATE SKIP LOCKED)
    UPDATE notifications n
       SET status = 'sending', attempts = n.attempts + 1, claimed_at = now(), updated_at = now(),
           first_attempt_at = coalesce(n.first_attempt_at, now())
      FROM prev
     WHERE n.id = prev.id
       AND (
            (n.status IN ('pending', 'unknown') AND (n.next_attempt_at IS NULL OR n.next_attempt_at <= now()))
         OR (n.status = 'sending' AND n.claimed_at < now() - make_interval(secs => :stale_after))
       )
    RETURNING {", ".join("n." + c.strip() for c in COLUMNS.split(","))}, prev.status AS previous_status
    """
)


def claim(conn: sa.Connection, notification_id: int, stale_after: float) -> dict | None:
    """Take the row for one send attempt; None if it is not due, already done, or someone else holds it.

    `previous_status` tells whether an earlier attempt may have reached the
    provider ('unknown', or 'sending' left behind by a killed sender).
    """
    row = conn.execute(_CLAIM, {"id": notification_id, "stale_after": float(stale_after)}).mappings().first()
    return dict(row) if row else None


def mark_sent(conn: sa.Connection, notification_id: int, provider: str, sid: str, provider_status: str) -> None:
    """Record the provider's message, and a `notified` event on the job's activity log.

    Not fenced by attempt: any claim's sid is the truth about what was sent.
    """
    conn.execute(
        sa.text(
            """
            WITH n AS (
                UPDATE notifications SET status = 'sent', provider = :provider, provider_sid = :sid,
                       provider_status = :pstatus, sent_at = coalesce(sent_at, now()), updated_at = now(),
                       next_attempt_at = NULL, last_error_code = NULL, last_error_message = NULL
                 WHERE id = :id AND status = 'sending'
                RETURNING job_id, channel
            )
            INSERT INTO search_job_events (job_id, kind, status, progress, stage, version, attempt, detail)
            SELECT j.job_id, 'notified', j.status, j.progress, j.stage, j.version, j.attempts,
                   jsonb_build_object('channel', n.channel, 'provider', CAST(:provider AS text))
              FROM n JOIN search_jobs j ON j.job_id = n.job_id
            """
        ),
        {"id": notification_id, "provider": provider, "sid": sid, "pstatus": provider_status},
    )


def mark_retry(conn: sa.Connection, notification_id: int, attempt: int, *, status: str, delay: float,
               error_code: str | None, error_message: str) -> None:
    """Back to `pending` (definitely not sent) or `unknown` (may have been sent), due again after `delay`.

    Only for the claim numbered `attempt`: a sender presumed dead (its row re-claimed after
    STALE_SENDING_SECONDS) must not put a newer attempt's row back to `pending`, which would
    make the next try send without looking the message up first.
    """
    assert status in ("pending", "unknown")
    conn.execute(
        sa.text(
            "UPDATE notifications SET status = :status, next_attempt_at = now() + make_interval(secs => :delay), "
            "last_error_code = :code, last_error_message = :message, updated_at = now() "
            "WHERE id = :id AND status = 'sending' AND attempts = :attempt"
        ),
        {"id": notification_id, "attempt": attempt, "status": status, "delay": float(delay), "code": error_code,
         "message": error_message[:300]},
    )


def mark_failed(conn: sa.Connection, notification_id: int, attempt: int, error_code: str | None,
                error_message: str) -> None:
    """A permanent failure: recorded, never retried. The job stays completed. Only for the claim `attempt`."""
    conn.execute(
        sa.text(
            "UPDATE notifications SET status = 'failed', next_attempt_at = NULL, last_error_code = :code, "
            "last_error_message = :message, updated_at = now() "
            "WHERE id = :id AND status = 'sending' AND attempts = :attempt"
        ),
        {"id": notification_id, "attempt": attempt, "code": error_code, "message": error_message[:300]},
    )


def apply_provider_status(conn: sa.Connection, sid: str, provider_status: str, error_code: str | None) -> bool:
    """A delivery report: moves forward only (reports arrive out of order and twice)."""
    rank = PROVIDER_STATUS_RANK.get(provider_status)
    if rank is None:
        return False
    new_status = TERMINAL_PROVIDER_STATUSES.get(provider_status, "sent")
    result = conn.execute(
        sa.text(
            """
            UPDATE notifications
               SET provider_status = :pstatus, status = :status, updated_at = now(),
                   delivered_at = CASE WHEN :status = 'delivered' THEN now() ELSE delivered_at END,
                   last_error_code = coalesce(:code, last_error_code)
             WHERE provider_sid = :sid
               AND status IN ('sent', 'sending', 'unknown', 'delivered', 'undelivered', 'failed')
               AND coalesce(CASE provider_status
                     WHEN 'accepted' THEN 1 WHEN 'queued' THEN 1 WHEN 'sending' THEN 2 WHEN 'sent' THEN 3
                     WHEN 'delivered' THEN 4 WHEN 'undelivered' THEN 4 WHEN 'failed' THEN 4
                     WHEN 'canceled' THEN 4 WHEN 'read' THEN 5 END, 0) < :rank
            """
        ),
        {"sid": sid, "pstatus": provider_status, "status": new_status, "rank": rank, "code": error_code},
    )
    return result.rowcount > 0


def has_provider_sid(conn: sa.Connection, sid: str) -> bool:
    """True if an outbox row carries this provider message sid (tells an unknown sid from a stale report)."""
    return conn.execute(sa.text("SELECT 1 FROM notifications WHERE provider_sid = :sid LIMIT 1"),
                        {"sid": sid}).first() is not None


def due(conn: sa.Connection, stale_after: float, limit: int = 500) -> list[int]:
    """Rows the scheduler should (re-)enqueue: due pending/unknown ones, and sends left by a killed sender."""
    rows = conn.execute(
        sa.text(
            "SELECT id FROM notifications WHERE "
            "(status IN ('pending', 'unknown') AND (next_attempt_at IS NULL OR next_attempt_at <= now())) "
            "OR (status = 'sending' AND claimed_at < now() - make_interval(secs => :stale)) "
            "ORDER BY id LIMIT :limit"
        ),
        {"stale": float(stale_after), "limit": limit},
    )
    return [r[0] for r in rows]


def for_job(conn: sa.Connection, job_id: str) -> list[dict]:
    rows = conn.execute(sa.text(f"SELECT {COLUMNS} FROM notifications WHERE job_id = :j ORDER BY id"), {"j": job_id})
    return [dict(r) for r in rows.mappings()]


def counts_by_status(conn: sa.Connection) -> dict[str, int]:
    return dict(conn.execute(sa.text("SELECT status, count(*) FROM notifications GROUP BY status")).all())
