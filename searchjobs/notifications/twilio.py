"""Twilio SMS sender, built on the official twilio client; every provider error is translated here."""

import json
import logging
import socket
import threading
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit, urlunsplit

import requests
from twilio.base.exceptions import TwilioException, TwilioRestException, TwilioServiceException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client
from urllib3.exceptions import NewConnectionError

from searchjobs.errors import ConfigError
from searchjobs.notifications.base import (
    LINK_UNREADABLE,
    CredentialsRejectedError,
    PermanentSendError,
    RetryableSendError,
    SendError,
    SendNotStartedError,
    SentMessage,
    UnknownOutcomeError,
)
from searchjobs.notifications.messages import MATCHED, UNREADABLE, match_sent_body
from searchjobs.notifications.phone import mask

logger = logging.getLogger(__name__)

#: HTTP status Twilio uses when we send too fast (error code 20429); nothing was created
HTTP_TOO_MANY_REQUESTS = 429
#: lookups widen the time window by this much, since our clock and Twilio's differ
CLOCK_SKEW_MARGIN = timedelta(minutes=5)
#: records per page when looking a message up
LOOKUP_PAGE_SIZE = 50
#: upper bound on records scanned per lookup pass (a person rarely gets more SMS than this in the window)
MAX_LOOKUP_RECORDS = 200
#: HTTP status of a refused login: bad, revoked or rotated credentials
HTTP_UNAUTHORIZED = 401
#: Twilio's error code for a refused login ("Authenticate"), whatever the HTTP status it comes with
TWILIO_AUTHENTICATE = 20003
#: what Twilio prepends to every body sent from a trial account; a look-up must still recognise our message
TRIAL_BODY_PREFIX = "Sent from your Twilio trial account - "


class _RoutedHttpClient(TwilioHttpClient):
    """TwilioHttpClient that can send every request to another base URL, and logs no phone numbers.

    The twilio Client has no base-URL setting; its http_client hook is the supported way in.
    """

    def __init__(self, base_url: str | None, timeout: float):
        # pool_connections keeps one requests.Session; its adapters do not retry (a retried POST could double-send)
        super().__init__(pool_connections=True, timeout=timeout)
        self._base = urlsplit(base_url) if base_url else None
        self._start_by = threading.local()  # per thread: the sender is shared by a process's threads

    def start_by(self, deadline: float | None) -> None:
        """Make the next requests of this thread only if they start by `deadline` (time.monotonic())."""
        self._start_by.deadline = deadline

    def request(
        self,
        method,
        url,
        params=None,
        data=None,
        headers=None,
        auth=None,
        timeout=None,
        allow_redirects=False,
    ):
        deadline = getattr(self._start_by, "deadline", None)
        # the last moment before the request: after it, only DNS, connect and the write itself
        if deadline is not None and time.monotonic() > deadline:
            raise SendNotStartedError(
                f"not sent: the request would have started {time.monotonic() - deadline:.1f}s past its "
                "start-by time (this process stalled after recording the send)"
            )
        if self._base is not None:
            original = urlsplit(url)
            # keep the API path and query, swap scheme and host (and prepend any base path)
            path = self._base.path.rstrip("/") + original.path
            url = urlunsplit((self._base.scheme, self._base.netloc, path, original.query, original.fragment))
        return super().request(
            method,
            url,
            params=params,
            data=data,
            headers=headers,
            auth=auth,
            timeout=timeout,
            allow_redirects=allow_redirects,
        )

    def log_request(self, kwargs):
        # the parent logs query params at INFO, which include the unmasked To number on lookups
        logger.debug(
            "twilio request",
            extra={"method": kwargs.get("method"), "path": urlsplit(kwargs.get("url", "")).path},
        )

    def log_response(self, status_code, response):
        logger.debug("twilio response", extra={"http_status": status_code})


class TwilioSender:
    """Sends SMS with Twilio's Messages API."""

    name = "twilio"

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        *,
        from_number: str | None = None,
        messaging_service_sid: str | None = None,
        api_base_url: str | None = None,
        timeout: float = 10.0,
    ):
        if not account_sid or not auth_token:
            raise ConfigError("Twilio account SID and auth token are required.")
        if bool(from_number) == bool(messaging_service_sid):
            raise ConfigError("Set exactly one of the Twilio from number and messaging service SID.")
        if not isinstance(timeout, (int, float)) or timeout <= 0:
            raise ConfigError("The Twilio request timeout must be a positive number of seconds.")
        if api_base_url is not None:
            parts = urlsplit(api_base_url)
            if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
                raise ConfigError("The Twilio API base URL must look like https://host[:port][/path].")

        self._from_number = from_number
        self._messaging_service_sid = messaging_service_sid
        self.timeout = float(timeout)
        # requests applies one timeout number to the connect and, again, to each read of the answer
        # (TwilioHttpClient passes ours as `timeout=`): a request gives up connect + read after it starts
        self.connect_timeout = self.read_timeout = self.timeout
        self.max_request_seconds = self.connect_timeout + self.read_timeout
        self._http = _RoutedHttpClient(api_base_url, self.timeout)
        self._client = Client(account_sid, auth_token, http_client=self._http)

    def send(self, to: str, body: str, status_callback: str | None = None, *,
             start_by: float | None = None) -> SentMessage:
        params = {"to": to, "body": body}
        if self._from_number:
            params["from_"] = self._from_number
        else:
            params["messaging_service_sid"] = self._messaging_service_sid
        if status_callback:
            params["status_callback"] = status_callback

        self._http.start_by(start_by)
        try:
            message = self._client.messages.create(**params)
        except SendNotStartedError:
            logger.warning("sms not sent: started too late", extra={"provider": self.name, "to": mask(to)})
            raise
        except (TwilioException, requests.RequestException, ValueError) as exc:
            error = _classify_send_error(exc)
            logger.warning(
                "sms send failed",
                extra={
                    "provider": self.name,
                    "to": mask(to),
                    "outcome": error.code,
                    "provider_code": error.provider_code,
                    "http_status": error.http_status,
                },
            )
            raise error from exc
        finally:
            self._http.start_by(None)  # look-ups and later sends are not bound by it

        sent = _to_sent_message(message)
        logger.info(
            "sms accepted",
            extra={"provider": self.name, "to": mask(to), "sid": sent.sid, "status": sent.status},
        )
        return sent

    def find_sent(self, to: str, since: datetime, body_sha256: str | None, *,
                  token_hash: str | None = None) -> SentMessage | None:
        cutoff = _as_utc(since) - CLOCK_SKEW_MARGIN
        try:
            # pass 1: the documented date filter (applies to date_sent)
            found, unreadable = self._scan(to, cutoff, body_sha256, token_hash, date_sent_after=cutoff)
            if found is None:
                # pass 2: a message still queued/accepted has no date_sent yet, so the filter hides it
                found, unreadable_queued = self._scan(to, cutoff, body_sha256, token_hash)
                unreadable = unreadable or unreadable_queued
        except (TwilioException, requests.RequestException, ValueError) as exc:
            # a failed lookup proves nothing about the original message, so this is never "retryable"
            status, provider_code = _status_and_code(exc)
            logger.warning(
                "sms lookup failed",
                extra={
                    "provider": self.name,
                    "to": mask(to),
                    "provider_code": provider_code,
                    "http_status": status,
                },
            )
            if _credentials_refused_by(status, provider_code):
                raise _credentials_refused(status, provider_code) from exc
            raise UnknownOutcomeError(
                "Could not look the SMS up at Twilio; whether it was sent is still unknown.",
                provider_code=provider_code,
                http_status=status,
            ) from exc

        if found is None and unreadable is not None:
            logger.warning(
                "sms lookup inconclusive: a message to this number has a link without a result token",
                extra={"provider": self.name, "to": mask(to), "sid": unreadable.sid},
            )
            raise UnknownOutcomeError(
                f"Twilio holds a message to this number ({unreadable.sid}) whose link shows no result "
                "token (link shortening on?); it may be ours, so whether the SMS was sent is unknown.",
                code=LINK_UNREADABLE,
            )
        logger.info(
            "sms lookup done",
            extra={"provider": self.name, "to": mask(to), "sid": found.sid if found else None},
        )
        return found

    def _scan(
        self, to: str, cutoff: datetime, body_sha256: str | None, token_hash: str | None, **filters
    ) -> tuple[SentMessage | None, SentMessage | None]:
        """(our message, or None; a message that may be ours but cannot tell, or None)."""
        records = self._client.messages.stream(
            to=to, page_size=LOOKUP_PAGE_SIZE, limit=MAX_LOOKUP_RECORDS, **filters
        )
        unreadable = None
        for record in records:
            created = record.date_created
            if created is not None and created < cutoff:
                continue
            verdict = _match(record.body or "", body_sha256, token_hash)
            if verdict == MATCHED:
                return _to_sent_message(record), None
            if verdict == UNREADABLE and unreadable is None:
                unreadable = _to_sent_message(record)
        return None, unreadable


def _match(stored: str, body_sha256: str | None, token_hash: str | None) -> str | None:
    """match_sent_body, also for the provider's copy of a body from a trial account (prefixed by Twilio)."""
    verdict = match_sent_body(stored, body_sha256=body_sha256, token_hash=token_hash)
    if verdict != MATCHED and stored.startswith(TRIAL_BODY_PREFIX):
        trimmed = stored.removeprefix(TRIAL_BODY_PREFIX)
        verdict = match_sent_body(trimmed, body_sha256=body_sha256, token_hash=token_hash) or verdict
    return verdict


def _credentials_refused_by(status: int | None, provider_code: int | None) -> bool:
    """True for a refused login (401, or Twilio code 20003), which pauses every send.

    Not any 403: Twilio also answers 403 about one message or number (a region or a sender not
    enabled for it), and that must fail that message only, not pause the whole outbox.
    """
    return status == HTTP_UNAUTHORIZED or provider_code == TWILIO_AUTHENTICATE


def _credentials_refused(status: int, provider_code: int | None) -> CredentialsRejectedError:
    return CredentialsRejectedError(
        f"Twilio refused our credentials (HTTP {status}, Twilio code {provider_code}): check "
        "TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN (revoked or rotated?); nothing was sent.",
        provider_code=provider_code,
        http_status=status,
    )


def _to_sent_message(message) -> SentMessage:
    return SentMessage(
        sid=message.sid,
        status=str(message.status),
        to=message.to,
        body=message.body or "",
        date_created=message.date_created,
    )


def _as_utc(moment: datetime) -> datetime:
    # naive datetimes are taken as UTC; twilio's serializer drops the offset, so convert first
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _status_and_code(exc: Exception) -> tuple[int | None, int | None]:
    """HTTP status and Twilio error code carried by a twilio exception, if any."""
    if isinstance(exc, (TwilioRestException, TwilioServiceException)):
        code = exc.code if isinstance(exc.code, int) else None
        return exc.status, code
    if isinstance(exc, TwilioException):
        # Page raises TwilioException("Unable to fetch page", response) for non-200 list pages
        for arg in exc.args:
            status = getattr(arg, "status_code", None)
            if isinstance(status, int):
                return status, _error_code_in(getattr(arg, "text", None))
    return None, None


def _error_code_in(text) -> int | None:
    """Twilio's error code in an error body ({"code": 20003, ...}), if it has one."""
    try:
        code = json.loads(text).get("code") if isinstance(text, str) else None
    except (ValueError, AttributeError):
        return None
    return code if isinstance(code, int) else None


def _classify_send_error(exc: Exception) -> SendError:
    """Map a twilio/requests exception from messages.create to our SendError subclasses."""
    if isinstance(exc, requests.ConnectTimeout):
        # must come before ConnectionError (its parent): the TCP connection never opened
        return RetryableSendError("Timed out connecting to Twilio; the SMS was not sent.")
    if isinstance(exc, requests.ConnectionError) and _failed_before_sending(exc):
        return RetryableSendError("Could not connect to Twilio; the SMS was not sent.")
    if isinstance(exc, requests.RequestException):
        # read timeout, reset, remote disconnected ...: the request may have reached Twilio
        return UnknownOutcomeError(
            f"Twilio did not answer ({type(exc).__name__}); the SMS may have been sent."
        )

    status, provider_code = _status_and_code(exc)
    if status is None:
        # e.g. an unreadable 2xx body: Twilio may well have created the message
        return UnknownOutcomeError("Unexpected answer from Twilio; the SMS may have been sent.")
    # our own text: Twilio's message can contain the phone number
    detail = f"HTTP {status}, Twilio code {provider_code}"
    if _credentials_refused_by(status, provider_code):
        # the login was refused before anything was looked at: not the message's fault, nothing created
        return _credentials_refused(status, provider_code)
    if status == HTTP_TOO_MANY_REQUESTS:
        return RetryableSendError(
            f"Twilio rate limit ({detail}); the SMS was not sent.",
            provider_code=provider_code,
            http_status=status,
        )
    if 400 <= status < 500:
        return PermanentSendError(
            f"Twilio rejected the SMS ({detail}).", provider_code=provider_code, http_status=status
        )
    return UnknownOutcomeError(
        f"Twilio server error ({detail}); the SMS may have been sent.",
        provider_code=provider_code,
        http_status=status,
    )


def _failed_before_sending(exc: BaseException) -> bool:
    """True if the exception chain shows the connection never opened (refused, DNS failure)."""
    seen = set()
    pending = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        # urllib3 raises NewConnectionError (NameResolutionError is a subclass) before writing anything
        if isinstance(current, (NewConnectionError, ConnectionRefusedError, socket.gaierror)):
            return True
        pending.append(getattr(current, "reason", None))  # urllib3 MaxRetryError
        pending.append(current.__cause__)
        pending.append(current.__context__)
        pending.extend(arg for arg in getattr(current, "args", ()) if isinstance(arg, BaseException))
    return False
