"""What every SMS sender returns and raises, so callers never see provider types."""

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

from searchjobs.errors import SearchJobsError


@dataclass(frozen=True)
class SentMessage:
    """A message the provider accepted (or, from find_sent, one it holds)."""

    sid: str
    status: str
    to: str
    body: str
    date_created: datetime | None = None


class SendError(SearchJobsError):
    """The SMS could not be sent."""

    code = "sms_send_failed"

    def __init__(
        self,
        message: str = "",
        *,
        provider_code: int | None = None,
        http_status: int | None = None,
        code: str | None = None,
    ):
        super().__init__(message, code=code)
        #: the provider's own error code (Twilio: 21610, 20429 ...), None for network errors
        self.provider_code = provider_code
        #: HTTP status of the provider's answer, None if there was no answer
        self.http_status = http_status


class RetryableSendError(SendError):
    """The SMS was definitely not sent; sending again later is safe."""

    code = "sms_send_retryable"


class PermanentSendError(SendError):
    """The provider rejected the SMS; retrying will not help."""

    code = "sms_send_rejected"


class UnknownOutcomeError(SendError):
    """The SMS may or may not have been sent; look it up (find_sent) before any retry."""

    code = "sms_send_unknown_outcome"


class SendNotStartedError(SendError):
    """The request was never made: it would have started later than the caller allowed (`start_by`).

    Nothing was sent by it. The caller had recorded when the send could still land, counting from a
    prompt start; a process that stalled past that (a freeze, a GC pause) must not send.
    """

    code = "sms_send_not_started"


#: error code of a look-up that found a message whose link cannot be read (a shortened link)
LINK_UNREADABLE = "sms_link_unreadable"


class CredentialsRejectedError(SendError):
    """The provider refused our credentials (bad or rotated); nothing was sent or looked up.

    Not the message's fault: sending is paused until the process runs with valid credentials.
    """

    code = "sms_credentials_rejected"


@runtime_checkable
class Sender(Protocol):
    """An SMS provider."""

    name: str
    #: longest a request can take from its start until we stop listening (connect + read timeouts)
    max_request_seconds: float

    def send(self, to: str, body: str, status_callback: str | None = None, *,
             start_by: float | None = None) -> SentMessage:
        """Send `body` to the E.164 number `to`; raise a SendError subclass on failure.

        `start_by`: a time.monotonic() reading; if the request would start after it, none is made
        (SendNotStartedError).
        """
        ...

    def find_sent(self, to: str, since: datetime, body_sha256: str | None, *,
                  token_hash: str | None = None) -> SentMessage | None:
        """Look up at the provider a message to `to`, created since `since`, that we sent.

        Ours: a body hashing to `body_sha256`, or (given `token_hash`) a body whose result link carries
        the token of that hash, however the provider rewrote the rest (messages.match_sent_body).
        None means the provider holds no such message. A failed look-up raises (UnknownOutcomeError, or
        CredentialsRejectedError): it proves nothing either way. So does a message to `to` with a link
        that shows no result token (a shortened link, which may be ours): UnknownOutcomeError with code
        LINK_UNREADABLE.
        """
        ...
