"""The SMS send: what a worker runs for `searchjobs.notifications.send.send(notification_id)`.

Exactly one SMS per completed job, through crashes and provider faults, never given up too early:
- the outbox row is claimed atomically (pending -> sending). A claim is a lease: one older than
  STALE_SENDING_SECONDS is taken over, and a sender frozen that long (SIGSTOP, a GC pause) may still
  wake up holding its old claim. Every write of a try is fenced by its claim number; the request
  itself cannot be, so it is bounded in time instead. Before each create request the time it starts,
  `may_land_until` (when it can no longer land, by this process's timeouts) and the sha256 of the
  exact body are committed; the request is then made only if it starts within SEND_START_GRACE of
  that (a monotonic reading taken before the commit), else the row goes back `unknown` unsent;
- 429 and connection refused mean "not sent": retried with backoff and jitter;
- a Postgres error before the request (a backend terminated, a failover) hands the row back, due at
  once, instead of leaving it `sending` until re-claimed: nothing was sent;
- a 5xx, a timeout or a dropped connection leave the outcome unknown, and so does a sender killed
  mid-send (its row stays `sending` until re-claimed). The next try looks the message up at the
  provider (messages to that number since the first try whose result link carries the job's token),
  but only once the last request can no longer land: after `may_land_until`, and after last_send_at +
  SEND_START_GRACE + connect and read timeouts + SEARCHJOBS_SMS_LOOKUP_MARGIN by this process's
  settings; after a failed request, also not before the failure + timeouts + margin (the request may
  have started late). Before that "not found" proves nothing. Found: adopted. Not found then:
  nothing sent can land any more, so sending is safe. What remains (Twilio has no idempotency key):
  a sender that passes its start check and then stalls before its socket write (a freeze in those
  few lines of Python, or DNS, which no timeout bounds) for longer than read timeout + margin (70 s
  by default), while its row is re-claimed and looked up, sends a second SMS; so does a provider
  that creates a received message later than the margin;
- a message with a link that shows no token (link shortening) makes the look-up inconclusive;
- a look-up that fails proves nothing either: never a send, the look-up is retried with backoff, and
  after the deadline the row is parked (`unknown`, no next attempt) for an operator;
- 401, or Twilio code 20003 (our credentials refused), pauses sending: the row stays pending (or
  unknown), is tried again every SEARCHJOBS_SMS_AUTH_RETRY_SECONDS, and its deadline moves on, so a
  pause loses nothing; this process makes no request for the rest of that pause (one error line per
  pause says why);
- other 4xx (a 403 about one message or number included) are permanent: recorded, never retried;
  the job stays completed;
- give-up is a deadline (`give_up_at`, SEARCHJOBS_SMS_GIVE_UP_HOURS after the job completed, within
  the retention period), not a number of tries: a send still failing then is `failed`.

The outbox stores the body with a `{link}` placeholder (the token is never stored in clear); the
body is rendered with this process's SECRET_KEY and PUBLIC_BASE_URL at each send. A resend (after a
conclusive "not found") therefore sends the link as it is now, and its hash replaces the stored one;
a link the job's stored token hash does not match (SECRET_KEY changed) is never sent: the row waits.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from datetime import datetime, timedelta

from searchjobs import defaults, links, metrics
from searchjobs.db.engine import DB_ERRORS, is_outage
from searchjobs.notifications import outbox
from searchjobs.notifications.base import (
    CredentialsRejectedError,
    PermanentSendError,
    RetryableSendError,
    Sender,
    SendError,
    SendNotStartedError,
    UnknownOutcomeError,
)
from searchjobs.notifications.messages import body_sha256, mask_link
from searchjobs.notifications.phone import mask
from searchjobs.queue import backoff_delay
from searchjobs.runtime import Runtime, get_runtime

log = logging.getLogger(__name__)

STALE_SENDING_SECONDS = 120  # a row `sending` for longer than this was left by a killed sender
SMS_BACKOFF_BASE = 5.0  # seconds; first retry delay, doubled each time, with jitter
SMS_BACKOFF_MAX = 600.0  # seconds; cap on one retry delay
LINK_MISMATCH = "sms_link_mismatch"  # error code: this process's SECRET_KEY did not sign the job's link
DATABASE_FAILED = "sms_database_error"  # error code: Postgres failed a try before its request; nothing sent
SEND_START_GRACE = defaults.SMS_SEND_START_GRACE  # seconds from recording a send to its request's latest start

# sender -> (monotonic time until which this process sends nothing with it, the provider's refusal)
_refused_until: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_refused_lock = threading.Lock()


def status_callback_url(runtime: Runtime) -> str:
    return f"{runtime.settings.public_base_url}/webhooks/twilio/status"


def lookup_wait(sender: Sender, settings) -> float:
    """Seconds after a request started (or was given up on) until it can no longer land at the provider.

    The sender's connect and read timeouts (requests applies TWILIO_TIMEOUT to each: a request can
    last twice that), then SEARCHJOBS_SMS_LOOKUP_MARGIN for the provider to create what it received.
    """
    return sender.max_request_seconds + settings.sms_lookup_margin


def settle_seconds(sender: Sender, settings) -> float:
    """Seconds after a send is recorded (`mark_sending`) until its request can no longer land.

    The request starts within SEND_START_GRACE of the recording, or is not made at all.
    """
    return SEND_START_GRACE + lookup_wait(sender, settings)


def send(notification_id: int) -> str:
    """RQ entry point. Returns the outcome: "sent", "adopted", "retry", "unknown", "waiting", "paused",
    "parked", "failed" or "skipped"."""
    runtime = get_runtime()
    # built before the claim: a configuration error must not leave the row `sending` (and re-claimed forever)
    sender = runtime.sender
    row = _claim(runtime, notification_id)
    if row is None:
        return "skipped"
    attempt = _Try(runtime, sender, row)
    try:
        return attempt.run()
    except DB_ERRORS as exc:
        # Postgres failed this try. Before the request, hand the row back now rather than leave it
        # `sending` until STALE_SENDING_SECONDS presume this sender dead. After it, the row stays `sending`:
        # the request may have landed, and the try that takes the row over looks it up first.
        outcome = None if attempt.requested or not is_outage(exc) else attempt.release(exc)
        if outcome is None:
            raise
        return outcome


def _claim(runtime: Runtime, notification_id: int) -> dict | None:
    """The row, claimed for this try (pending -> sending, or a stale claim taken over); None if not ours."""
    settings = runtime.settings
    with runtime.db.connect() as conn:
        return outbox.claim(conn, notification_id, STALE_SENDING_SECONDS,
                            give_up_after=settings.sms_give_up_hours * 3600, retention_days=settings.retention_days)


class _Try:
    """One claimed attempt at one outbox row."""

    def __init__(self, runtime: Runtime, sender: Sender, row: dict):
        self.runtime, self.sender, self.row = runtime, sender, row
        self.requested = False  # a create request was (or may have been) made by this try
        self.id, self.attempt = row["id"], row["attempts"]
        self.now: datetime = row["db_now"]  # the database's clock: every deadline is on it
        self.context = {"job_id": row["job_id"], "notification_id": self.id, "to": mask(row["to_number"]),
                        "attempt": self.attempt}

    def run(self) -> str:
        token, link, body = self._render()
        outcome = self._settle_earlier_request(token, body)
        if outcome is not None:
            return outcome
        return self._send_now(token, link, body)

    def _render(self) -> tuple[str, str, str]:
        """The job's result token, its link and the body with the link in, by this process's settings."""
        settings = self.runtime.settings
        token = links.result_token(settings.secret_key, self.row["job_id"])
        link = links.result_url(settings.public_base_url, token)
        return token, link, self.row["body"].replace(links.LINK_PLACEHOLDER, link)

    # -- an earlier request: look it up before sending again -------------------------------------

    def _settle_earlier_request(self, token: str, body: str) -> str | None:
        """If an earlier request may have reached the provider, look it up first.

        Returns this try's outcome (waiting, paused, adopted, or a failed look-up), or None when nothing
        earlier can have landed: no earlier request, or a conclusive "not found".
        """
        lookup_at = self._lookup_at()
        if lookup_at is None:
            return None
        if self.now < lookup_at:
            return self._wait_for_lookup(lookup_at)
        if self._refused():
            return self._pause("unknown", None)
        row = self.row
        try:
            # the job's token, which any earlier request carried (a link it did not sign is never sent),
            # whatever the provider did to the rest of the body and whatever PUBLIC_BASE_URL was then;
            # and the hash of the exact body sent then, or of the body as built now for rows that lack it
            found = self.sender.find_sent(row["to_number"], row["first_attempt_at"],
                                          row["body_sha256"] or body_sha256(body),
                                          token_hash=row["result_token_hash"] or links.token_hash(token))
        except CredentialsRejectedError as exc:
            return self._pause("unknown", exc)
        except SendError as exc:
            return self._lookup_failed(exc)
        if found is None:
            return None  # conclusive: no earlier request landed, and none can land any more
        return self._adopt(found)

    def _lookup_at(self) -> datetime | None:
        """When the last earlier request can no longer land (a look-up is conclusive only then), or None
        if no earlier request may have reached the provider."""
        row = self.row
        last_send = row["last_send_at"] or (row["first_attempt_at"] if row["previous_status"] == "unknown" else None)
        if row["previous_status"] not in ("unknown", "sending") or last_send is None:
            return None
        # the later of what the sending process recorded and what this process's settings say
        lookup_at = last_send + timedelta(seconds=settle_seconds(self.sender, self.runtime.settings))
        if row["may_land_until"] is not None:
            lookup_at = max(lookup_at, row["may_land_until"])
        return lookup_at

    def _adopt(self, found) -> str:
        with self.runtime.db.connect() as conn:
            outbox.mark_sent(conn, self.id, self.sender.name, found.sid, found.status)
        log.info("SMS found at the provider; adopted instead of sending again",
                 extra={**self.context, "sid": found.sid})
        metrics.SMS_SENDS.labels("adopted").inc()
        return "adopted"

    # -- sending --------------------------------------------------------------------------------

    def _send_now(self, token: str, link: str, body: str) -> str:
        """Nothing sent earlier can land: send, unless the link would not open or sending is paused."""
        outcome = self._not_sendable(token)
        if outcome is not None:
            return outcome
        recorded = self._record_send(body)
        if recorded is None:
            return "skipped"
        settings = self.runtime.settings
        self.requested = True
        try:
            message = self.sender.send(self.row["to_number"], body,
                                       status_callback=status_callback_url(self.runtime),
                                       start_by=recorded + SEND_START_GRACE)
        except SendNotStartedError as exc:
            # frozen past the grace: another sender may have re-claimed the row and looked it up already,
            # so a request now could be a second SMS. Not sent; the row is looked up later (our claim
            # permitting: after a re-claim this write changes nothing)
            log.warning("SMS not sent: this process stalled between recording the send and making it",
                        extra={**self.context, "error_code": _code(exc)})
            return self._retry("unknown", exc, may_land_for=lookup_wait(self.sender, settings))
        except CredentialsRejectedError as exc:
            return self._pause("pending", exc)
        except RetryableSendError as exc:
            # this request created nothing, and every earlier one is settled: still certain nothing was sent
            if self._past_deadline():
                return self._give_up(exc, f"gave up at the deadline: {exc.message}")
            return self._retry("pending", exc)
        except UnknownOutcomeError as exc:
            # look it up, even past the deadline (a look-up never sends), once the request cannot land
            # counted from now, when the request was given up, not from its recorded start (it may have
            # started late): `may_land_until` moves to now + timeouts + margin if that is later
            return self._retry("unknown", exc, may_land_for=lookup_wait(self.sender, settings))
        except PermanentSendError as exc:
            return self._rejected(exc)
        return self._sent(message, link)

    def _not_sendable(self, token: str) -> str | None:
        """This try's outcome when it must not send (link expired or not ours, sending paused), else None."""
        # Past the job's retention the link no longer opens: give up without a try. (The deadline,
        # give_up_at, is different: it is checked only after a try that failed, never instead of one.)
        if self.now >= self.row["retention_ends_at"]:
            return self._give_up(None, "the job's retention period is over: its result link no longer opens",
                                 code="sms_link_expired")
        if self.row["result_token_hash"] is not None and links.token_hash(token) != self.row["result_token_hash"]:
            return self._link_mismatch()
        if self._refused():
            return self._pause("pending", None)
        return None

    def _record_send(self, body: str) -> float | None:
        """Commit that the request starts now (fenced by our claim); the monotonic time read before the
        commit, which the request must start within SEND_START_GRACE of; None if the claim was taken over."""
        # read before the transaction whose now() becomes last_send_at: a slow commit eats into the grace
        # instead of extending it
        recorded = time.monotonic()
        with self.runtime.db.connect() as conn:
            if not outbox.mark_sending(conn, self.id, self.attempt, body_sha256(body),
                                       may_land_for=settle_seconds(self.sender, self.runtime.settings)):
                log.info("SMS claim taken over by a newer try; not sending", extra=self.context)
                return None
        return recorded

    def _sent(self, message, link: str) -> str:
        with self.runtime.db.connect() as conn:
            outbox.mark_sent(conn, self.id, self.sender.name, message.sid, message.status)
        log.info("SMS sent", extra={**self.context, "sid": message.sid, "link": mask_link(link)})
        metrics.SMS_SENDS.labels("sent").inc()
        return "sent"

    # -- outcomes other than sent/adopted ----------------------------------------------------------

    def _past_deadline(self) -> bool:
        return self.row["give_up_at"] is not None and self.now >= self.row["give_up_at"]

    def release(self, exc: Exception) -> str | None:
        """Before any request of this try, Postgres failed it: the row goes back to what the claim found,
        due at once (`unknown` still waits for its look-up time). The outcome: "retry", "skipped" if a
        newer try had taken the claim over, None if Postgres refuses this too."""
        status = "pending" if self._lookup_at() is None else "unknown"
        try:
            with self.runtime.db.connect() as conn:
                released = outbox.mark_retry(conn, self.id, self.attempt, status=status, delay=0,
                                             error_code=DATABASE_FAILED,
                                             error_message=f"database error before the send: {exc}")
        except DB_ERRORS:
            log.warning("SMS try stopped by a database error; its row is taken over after %s s",
                        STALE_SENDING_SECONDS, extra=self.context)
            return None
        if not released:
            log.info("SMS try stopped by a database error; its claim was already taken over", extra=self.context)
            return "skipped"
        log.warning("SMS try stopped by a database error before its request; due again",
                    extra={**self.context, "error": type(exc).__name__})
        metrics.SMS_SENDS.labels("retry").inc()
        return "retry"

    def _wait_for_lookup(self, lookup_at: datetime) -> str:
        """Too early to look up (the last request may still land): come back at `lookup_at`."""
        row = self.row
        code, message = row["last_error_code"], row["last_error_message"] or ""
        if row["previous_status"] == "sending":
            code, message = "sms_sender_lost", "a sender stopped mid-send; the message may have been sent"
        with self.runtime.db.connect() as conn:
            outbox.mark_retry(conn, self.id, self.attempt, status="unknown", delay=None, due_at=lookup_at,
                              error_code=code, error_message=message)
        log.info("SMS may still land at the provider; looking it up later",
                 extra={**self.context, "lookup_at": lookup_at.isoformat()})
        metrics.SMS_SENDS.labels("unknown").inc()
        return "waiting"

    def _retry(self, status: str, exc: SendError, may_land_for: float | None = None) -> str:
        delay = backoff_delay(self.attempt, base=SMS_BACKOFF_BASE, cap=SMS_BACKOFF_MAX)
        with self.runtime.db.connect() as conn:
            outbox.mark_retry(conn, self.id, self.attempt, status=status, delay=delay, error_code=_code(exc),
                              error_message=exc.message, may_land_for=may_land_for)
        # expected: the scheduler enqueues the row again once it is due
        log.info("SMS send will be retried", extra={**self.context, "outcome": status, "error_code": _code(exc),
                                                    "delay_s": round(max(delay, may_land_for or 0), 1)})
        outcome = "retry" if status == "pending" else "unknown"
        metrics.SMS_SENDS.labels(outcome).inc()
        return outcome

    def _lookup_failed(self, exc: SendError) -> str:
        """Inconclusive: never send. Retry the look-up; after the deadline, park the row for an operator."""
        if not self._past_deadline():
            return self._retry("unknown", exc)
        with self.runtime.db.connect() as conn:
            outbox.mark_retry(conn, self.id, self.attempt, status="unknown", delay=None, error_code=_code(exc),
                              error_message=f"parked: could not look it up until the deadline: {exc.message}")
        log.warning("SMS may have been sent and the provider cannot tell; parked for an operator "
                    "(check the provider console, then `searchjobs sms retry %s`)", self.id,
                    extra={**self.context, "error_code": _code(exc)})
        metrics.SMS_SENDS.labels("parked").inc()
        return "parked"

    def _rejected(self, exc: PermanentSendError) -> str:
        """A permanent refusal of this message: recorded, never retried; the job stays completed."""
        with self.runtime.db.connect() as conn:
            outbox.mark_failed(conn, self.id, self.attempt, _code(exc), exc.message)
        log.info("SMS rejected by the provider; not retried", extra={**self.context, "error_code": _code(exc)})
        metrics.SMS_SENDS.labels("failed").inc()
        return "failed"

    def _give_up(self, exc: SendError | None, message: str, code: str | None = None) -> str:
        code = code or (_code(exc) if exc is not None else "sms_deadline_passed")
        with self.runtime.db.connect() as conn:
            outbox.mark_failed(conn, self.id, self.attempt, code, message)
        log.warning("SMS given up; nothing was sent", extra={**self.context, "error_code": code,
                                                             "reason": message[:120]})
        metrics.SMS_SENDS.labels("failed").inc()
        return "failed"

    def _moved_deadline(self) -> datetime:
        """A paused row keeps a full retry budget after the pause, within the job's retention."""
        settings = self.runtime.settings
        fresh = min(self.now + timedelta(hours=settings.sms_give_up_hours), self.row["retention_ends_at"])
        return max(self.row["give_up_at"] or fresh, fresh)

    def _pause(self, status: str, exc: CredentialsRejectedError | None) -> str:
        """The provider refused our credentials (now, or earlier in this pause): wait, lose nothing."""
        pause = self.runtime.settings.sms_auth_retry_seconds
        if exc is not None:
            with _refused_lock:
                first = self._refusal() is None
                _refused_until[self.sender] = (time.monotonic() + pause, exc)
            if first:
                log.error("%s SMS sending is paused: messages stay pending and are tried again every %gs, "
                          "so they go out once workers run with valid credentials", exc.message, pause,
                          extra={**self.context, "error_code": _code(exc)})
        else:
            exc = self._refusal() or CredentialsRejectedError("paused: the provider refused our credentials")
        with self.runtime.db.connect() as conn:
            outbox.mark_retry(conn, self.id, self.attempt, status=status, delay=pause, error_code=_code(exc),
                              error_message=exc.message, give_up_at=self._moved_deadline())
        log.info("SMS paused: the provider refuses our credentials", extra={**self.context, "outcome": status})
        metrics.SMS_SENDS.labels("paused").inc()
        return "paused"

    def _refusal(self) -> CredentialsRejectedError | None:
        """The refusal this process is pausing for, if its pause is not over."""
        until, exc = _refused_until.get(self.sender, (0.0, None))
        return exc if until > time.monotonic() else None

    def _refused(self) -> bool:
        return self._refusal() is not None

    def _link_mismatch(self) -> str:
        """This process's SECRET_KEY did not sign the job's link: a link that would not open is never sent."""
        pause = self.runtime.settings.sms_auth_retry_seconds
        message = ("the result link does not match the job's (SECRET_KEY differs from the one that signed it); "
                   "not sent, waiting for a worker with the right SECRET_KEY")
        with self.runtime.db.connect() as conn:
            outbox.mark_retry(conn, self.id, self.attempt, status="pending", delay=pause, error_code=LINK_MISMATCH,
                              error_message=message, give_up_at=self._moved_deadline())
        log.error("SMS not sent: %s", message, extra={**self.context, "error_code": LINK_MISMATCH})
        metrics.SMS_SENDS.labels("paused").inc()
        return "paused"


def _code(exc: SendError) -> str:
    return str(exc.provider_code) if exc.provider_code is not None else exc.code
