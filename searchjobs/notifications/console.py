"""Console "SMS" sender for local development without Twilio credentials."""

import logging
import sys
import threading
import time
import uuid
from datetime import UTC, datetime

from searchjobs.notifications.base import SendNotStartedError, SentMessage
from searchjobs.notifications.messages import MATCHED, mask_links_in, match_sent_body
from searchjobs.notifications.phone import mask

logger = logging.getLogger(__name__)

#: minimum inner width of the text box printed to stderr
MIN_BOX_WIDTH = 40
#: status of every console "SMS" (it is shown at once, nothing is queued)
SENT_STATUS = "sent"


class ConsoleSender:
    """Shows each SMS on stderr instead of sending it; remembers what this process "sent"."""

    name = "console"
    max_request_seconds = 0.0  # no request: shown at once

    def __init__(self, stream=None):
        # None means "sys.stderr at print time", so pytest's capsys and redirections work
        self._stream = stream
        self._lock = threading.Lock()
        self._sent: list[SentMessage] = []

    def send(self, to: str, body: str, status_callback: str | None = None, *,
             start_by: float | None = None) -> SentMessage:
        if start_by is not None and time.monotonic() > start_by:
            raise SendNotStartedError()
        message = SentMessage(
            sid=f"console-{uuid.uuid4().hex}",
            status=SENT_STATUS,
            to=to,
            body=body,
            date_created=datetime.now(UTC),
        )
        with self._lock:
            self._sent.append(message)
        # logs are kept and shipped, so the link token stays masked there; the box below is the developer's copy
        logger.info(
            "SMS to %s: %s",
            mask(to),
            mask_links_in(body),
            extra={"provider": self.name, "to": mask(to), "sid": message.sid},
        )
        self._print_box(mask(to), body)
        return message

    def find_sent(self, to: str, since: datetime, body_sha256: str | None, *,
                  token_hash: str | None = None) -> SentMessage | None:
        since_utc = since.replace(tzinfo=UTC) if since.tzinfo is None else since
        with self._lock:
            candidates = list(self._sent)
        for message in reversed(candidates):
            if message.to != to or message.date_created < since_utc:
                continue
            if match_sent_body(message.body, body_sha256=body_sha256, token_hash=token_hash) == MATCHED:
                return message
        return None

    def _print_box(self, masked_to: str, body: str) -> None:
        lines = [f"SMS to {masked_to}", ""] + body.splitlines()
        # the box grows to the longest line so a link is never wrapped (it must stay copy-pastable)
        inner = max(MIN_BOX_WIDTH, *(len(line) for line in lines))
        border = "+" + "-" * (inner + 2) + "+"
        boxed = [border] + [f"| {line:<{inner}} |" for line in lines] + [border]
        stream = self._stream or sys.stderr
        stream.write("\n".join(boxed) + "\n")
        stream.flush()
