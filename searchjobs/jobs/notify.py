"""The SMS send: what a worker runs for `searchjobs.jobs.notify.send(notification_id)`.

At most one SMS per completed job, even through crashes and provider faults:
- the outbox row is claimed atomically (pending -> sending), so two senders never overlap;
- 429 and connection refused mean "not sent": retried with backoff and jitter;
- other 4xx are permanent: recorded, never retried; the job stays completed;
- a 5xx, a timeout or a dropped connection leave the outcome unknown, and a
  sender killed after the provider answered leaves the row in `sending`: in
  both cases the next attempt first looks the message up at the provider
  (messages to that number since the first attempt, containing the link) and
  adopts it if found, instead of sending a second one.
"""

from __future__ import annotations

import logging

from searchjobs import metrics
from searchjobs.jobs import links
from searchjobs.jobs.lifecycle import backoff_delay
from searchjobs.jobs.runtime import Runtime, get_runtime
from searchjobs.models import notifications as outbox
from searchjobs.notifications.base import (
    PermanentSendError,
    RetryableSendError,
    SendError,
    UnknownOutcomeError,
)
from searchjobs.notifications.messages import mask_link
from searchjobs.notifications.phone import mask

log = logging.getLogger(__name__)

STALE_SENDING_SECONDS = 120  # a row `sending` for longer than this was left by a killed sender
MAX_SEND_ATTEMPTS = 8  # after this many tries without a definite answer the row fails for good
SMS_BACKOFF_BASE = 5.0  # seconds; first retry delay, doubled each time, with jitter
SMS_BACKOFF_MAX = 600.0  # seconds; cap on one retry delay


def status_callback_url(runtime: Runtime) -> str:
    return f"{runtime.settings.public_base_url}/webhooks/twilio/status"


def _link_in(body: str) -> str:
    """The result link inside the message: what a provider look-up matches on."""
    return next((word for word in body.split() if "/r/" in word), body)


def send(notification_id: int) -> str:
    """RQ entry point. Returns the outcome ("sent", "adopted", "retry", "unknown", "failed", "skipped")."""
    runtime = get_runtime()
    # built before the claim: a configuration error must not leave the row `sending` (and re-claimed forever)
    sender = runtime.sender
    with runtime.db.connect() as conn:
        row = outbox.claim(conn, notification_id, STALE_SENDING_SECONDS)
    if row is None:
        return "skipped"
    context = {"job_id": row["job_id"], "notification_id": notification_id, "to": mask(row["to_number"]),
               "attempt": row["attempts"]}
    settings = runtime.settings
    body = links.render_sms(row["body"], settings.secret_key, settings.public_base_url, row["job_id"])
    link = _link_in(body)
    may_exist = row["previous_status"] in ("unknown", "sending")

    if may_exist:
        # an earlier try may have reached the provider: look before sending again
        try:
            found = sender.find_sent(row["to_number"], row["first_attempt_at"], link)
        except SendError as exc:
            return _retry(runtime, row, "unknown", exc, context)
        if found is not None:
            with runtime.db.connect() as conn:
                outbox.mark_sent(conn, notification_id, sender.name, found.sid, found.status)
            log.info("SMS found at the provider; adopted instead of sending again", extra=context)
            metrics.SMS_SENDS.labels("adopted").inc()
            return "adopted"

    try:
        message = sender.send(row["to_number"], body, status_callback=status_callback_url(runtime))
    except RetryableSendError as exc:
        # this try sent nothing, but an earlier one may have: keep `unknown` so the next try looks again
        return _retry(runtime, row, "unknown" if may_exist else "pending", exc, context)
    except UnknownOutcomeError as exc:
        return _retry(runtime, row, "unknown", exc, context)
    except PermanentSendError as exc:
        with runtime.db.connect() as conn:
            outbox.mark_failed(conn, notification_id, row["attempts"], _code(exc), exc.message)
        log.info("SMS rejected by the provider; not retried", extra={**context, "error_code": _code(exc)})
        metrics.SMS_SENDS.labels("failed").inc()
        return "failed"
    with runtime.db.connect() as conn:
        outbox.mark_sent(conn, notification_id, sender.name, message.sid, message.status)
    log.info("SMS sent", extra={**context, "sid": message.sid, "link": mask_link(link)})
    metrics.SMS_SENDS.labels("sent").inc()
    return "sent"


def _code(exc: SendError) -> str:
    return str(exc.provider_code) if exc.provider_code is not None else exc.code


def _retry(runtime: Runtime, row: dict, status: str, exc: SendError, context: dict) -> str:
    if row["attempts"] >= MAX_SEND_ATTEMPTS:
        with runtime.db.connect() as conn:
            outbox.mark_failed(conn, row["id"], row["attempts"], _code(exc),
                               f"gave up after {row['attempts']} attempts: {exc}")
        log.warning("SMS given up", extra={**context, "error_code": _code(exc)})
        metrics.SMS_SENDS.labels("failed").inc()
        return "failed"
    delay = backoff_delay(row["attempts"], base=SMS_BACKOFF_BASE, cap=SMS_BACKOFF_MAX)
    with runtime.db.connect() as conn:
        outbox.mark_retry(conn, row["id"], row["attempts"], status=status, delay=delay, error_code=_code(exc),
                          error_message=exc.message)
    # expected: the scheduler enqueues the row again once it is due
    log.info("SMS send will be retried", extra={**context, "outcome": status, "error_code": _code(exc),
                                                "delay_s": round(delay, 1)})
    metrics.SMS_SENDS.labels("retry" if status == "pending" else "unknown").inc()
    return "retry" if status == "pending" else "unknown"
