"""A local fake of Twilio's Messages API (2010-04-01), served over real HTTP for tests.

Point a TwilioSender at it with `api_base_url=fake.base_url`. Only the Messages
resource is implemented: create, list (To/From/DateSent filters, paging) and fetch.

Named faults of a create request (`script(...)` queues them for the next creates, in order;
`fault_for_suffix(...)` applies one to every create to numbers ending in some digits, which is how
tests that run real worker processes choose a fault per job):
- "ok";
- ("error", status, code): a Twilio error answer, nothing created;
- ("slow", seconds): create after `seconds`, then answer 201 (to whoever is still listening);
- ("land_late", seconds): the late-landing create: hold the request `seconds` (longer than the
  client's timeout: it gives up), then create the message anyway, and hang up without an answer;
- "timeout_after_create", "drop_after_create", "drop_before_create".
Credential faults: `refuse_credentials()` answers every request 401 (code 20003), as Twilio does to a
revoked or rotated auth token, until `accept_credentials()`; a client holding a token other than
`auth_token` gets the same answer anyway.
"""

import base64
import json
import re
import secrets
import socket
import threading
import time
from collections import deque
from datetime import UTC, date, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

#: fixed test credentials (any AC + 32 hex works; these only need to be stable)
DEFAULT_ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
DEFAULT_AUTH_TOKEN = "fake-twilio-auth-token"
#: API version prefix of every path
API_PREFIX = "/2010-04-01"
#: Twilio's default and maximum list page sizes
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
#: upper bound for "timeout_after_create": give up waiting for the client to hang up after this long
MAX_HANG_SECONDS = 30.0
#: how often blocked handlers check whether the fake is stopping
POLL_SECONDS = 0.05
#: Twilio's texts for the error codes tests use (others get a generic text)
ERROR_MESSAGES = {
    20003: "Authenticate",
    20404: "The requested resource was not found",
    20429: "Too Many Requests",
    20500: "An internal server error has occurred",
    21211: "The 'To' number is not a valid phone number.",
    21408: "Permission to send an SMS has not been enabled for the region indicated by the 'To' number",
    21602: "Message body is required.",
    21603: "A 'From' phone number is required.",
    21610: "Attempt to send to unsubscribed recipient",
    21614: "'To' number is not a valid mobile number",
}

_ACCOUNT_PATH = re.compile(r"^/2010-04-01/Accounts/(?P<account>[^/]+)/Messages(?:/(?P<sid>[^/]+))?\.json$")
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")


class FakeTwilio:
    """Fake Twilio Messages API on 127.0.0.1 (or `host`; ephemeral port), one background thread."""

    account_sid = DEFAULT_ACCOUNT_SID
    auth_token = DEFAULT_AUTH_TOKEN

    def __init__(
        self, account_sid: str | None = None, auth_token: str | None = None, *, deliver: bool = True,
        host: str = "127.0.0.1",
    ):
        self.host = host  # listen address: tests/faults/hosts.py passes its bridge address
        if account_sid is not None:
            self.account_sid = account_sid
        if auth_token is not None:
            self.auth_token = auth_token
        # deliver=True: created messages move to "sent" with a date_sent at once (create still answers "queued")
        self.deliver = deliver
        self._lock = threading.Lock()
        self._messages: list[dict] = []
        self._requests: list[tuple[str, str]] = []
        self._request_times: list[tuple[float, str, str]] = []
        self._script: deque = deque()
        self._suffix_faults: list[list] = []  # [suffix, behaviour, creates left or None]
        self._credentials_refused = False
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> "FakeTwilio":
        handler = type("_BoundHandler", (_Handler,), {"fake": self})
        self._server = ThreadingHTTPServer((self.host, 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": POLL_SECONDS},
            daemon=True,
            name="fake-twilio",
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> "FakeTwilio":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeTwilio is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # -- test controls and inspection -------------------------------------------

    def script(self, *behaviours) -> None:
        """Queue behaviours for the next create requests, used in order; when empty, "ok"."""
        for behaviour in behaviours:
            _check_behaviour(behaviour)
        with self._lock:
            self._script.extend(behaviours)

    def fault_for_suffix(self, suffix: str, behaviour, times: int | None = None) -> None:
        """Every create to a number ending in `suffix` gets `behaviour` (the first `times` ones, if given).

        Checked before the script; the first matching suffix wins.
        """
        _check_behaviour(behaviour)
        if not suffix.isdigit():
            raise ValueError(f"a phone suffix is digits, got {suffix!r}")
        with self._lock:
            self._suffix_faults.append([suffix, behaviour, times])

    def refuse_credentials(self) -> None:
        """Answer every request 401 / 20003 (revoked or rotated credentials) until accept_credentials()."""
        with self._lock:
            self._credentials_refused = True

    def accept_credentials(self) -> None:
        with self._lock:
            self._credentials_refused = False

    @property
    def messages(self) -> list[dict]:
        """Snapshot of every message created, oldest first."""
        with self._lock:
            return [dict(m) for m in self._messages]

    def messages_to(self, number: str) -> list[dict]:
        return [m for m in self.messages if m["to"] == number]

    @property
    def requests(self) -> list[tuple[str, str]]:
        """(method, path) of every request received, in order."""
        with self._lock:
            return list(self._requests)

    @property
    def timed_requests(self) -> list[tuple[float, str, str]]:
        """(time.time() on arrival, method, path) of every request received, in order."""
        with self._lock:
            return list(self._request_times)

    # -- used by the handler ------------------------------------------------------

    def _next_behaviour(self, to: str = ""):
        with self._lock:
            for fault in self._suffix_faults:
                suffix, behaviour, left = fault
                if to.endswith(suffix) and left != 0:
                    if left is not None:
                        fault[2] = left - 1
                    return behaviour
            return self._script.popleft() if self._script else "ok"

    def _refusing_credentials(self) -> bool:
        with self._lock:
            return self._credentials_refused

    def _record_request(self, method: str, path: str) -> None:
        with self._lock:
            self._requests.append((method, path))
            self._request_times.append((time.time(), method, path))

    def _create(self, fields: dict) -> dict:
        now = datetime.now(UTC).replace(microsecond=0)
        message = {
            "sid": "SM" + secrets.token_hex(16),
            "account_sid": self.account_sid,
            "to": fields["To"],
            "from": fields.get("From"),
            "messaging_service_sid": fields.get("MessagingServiceSid"),
            "body": fields.get("Body", ""),
            "status": "queued",
            "status_callback": fields.get("StatusCallback"),
            "date_created": now,
            "date_updated": now,
            "date_sent": None,
        }
        queued_view = dict(message)
        if self.deliver:
            message.update(status="sent", date_sent=now)
        with self._lock:
            self._messages.append(message)
        return queued_view

    def _find(self, sid: str) -> dict | None:
        with self._lock:
            for message in self._messages:
                if message["sid"] == sid:
                    return dict(message)
        return None

    def _stopped_or_waited(self, seconds: float) -> bool:
        """Sleep up to `seconds`; True if the fake is stopping."""
        return self._stopping.wait(seconds)


def _check_behaviour(behaviour) -> None:
    if behaviour in ("ok", "timeout_after_create", "drop_after_create", "drop_before_create"):
        return
    if isinstance(behaviour, tuple) and len(behaviour) == 3 and behaviour[0] == "error":
        return
    if isinstance(behaviour, tuple) and len(behaviour) == 2 and behaviour[0] in ("slow", "land_late"):
        return
    raise ValueError(f"unknown FakeTwilio behaviour: {behaviour!r}")


def _rfc2822(moment: datetime | None) -> str | None:
    return format_datetime(moment) if moment is not None else None


def _message_json(message: dict) -> dict:
    """A message resource as Twilio returns it."""
    uri = f"{API_PREFIX}/Accounts/{message['account_sid']}/Messages/{message['sid']}.json"
    return {
        "account_sid": message["account_sid"],
        "api_version": "2010-04-01",
        "body": message["body"],
        "date_created": _rfc2822(message["date_created"]),
        "date_sent": _rfc2822(message["date_sent"]),
        "date_updated": _rfc2822(message["date_updated"]),
        "direction": "outbound-api",
        "error_code": None,
        "error_message": None,
        "from": message["from"],
        "messaging_service_sid": message["messaging_service_sid"],
        "num_media": "0",
        "num_segments": "1",
        "price": None,
        "price_unit": "USD",
        "sid": message["sid"],
        "status": message["status"],
        "subresource_uris": {"media": uri.replace(".json", "/Media.json")},
        "to": message["to"],
        "uri": uri,
    }


def _parse_date_filter(value: str) -> datetime | date | None:
    """DateSent filter value: "YYYY-MM-DD" (a day) or "YYYY-MM-DDTHH:MM:SSZ" (what twilio-python sends)."""
    try:
        if "T" in value:
            return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        return date.fromisoformat(value)
    except ValueError:
        return None


def _date_matches(sent: datetime | None, bound: datetime | date, op: str) -> bool:
    if sent is None:
        # not sent yet: the real API leaves these out of DateSent filters too
        return False
    left = sent.date() if isinstance(bound, date) and not isinstance(bound, datetime) else sent
    if op == ">":
        return left >= bound  # Twilio documents DateSent> as "on or after"
    if op == "<":
        return left <= bound
    return left == bound


class _Handler(BaseHTTPRequestHandler):
    fake: FakeTwilio  # set on the per-server subclass
    protocol_version = "HTTP/1.1"  # keep-alive, like the real API; requires Content-Length on every answer

    def log_message(self, format, *args):  # noqa: A002 - silence the default stderr access log
        pass

    # -- plumbing -------------------------------------------------------------------

    def _send_json(self, status: int, payload: dict) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _send_error(self, status: int, code: int, message: str | None = None) -> None:
        self._send_json(
            status,
            {
                "code": code,
                "message": message or ERROR_MESSAGES.get(code, "Error"),
                "more_info": f"https://www.twilio.com/docs/errors/{code}",
                "status": status,
            },
        )

    def _drop(self) -> None:
        """Close the connection without any answer."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _authorized(self) -> bool:
        header = self.headers.get("Authorization", "")
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(encoded).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return secrets.compare_digest(user, self.fake.account_sid) and secrets.compare_digest(
            password, self.fake.auth_token
        )

    def _route(self):
        """(account, sid, query) for a Messages path, after auth checks; None if an answer was sent."""
        url = urlsplit(self.path)
        self.fake._record_request(self.command, url.path)
        if not self._authorized() or self.fake._refusing_credentials():
            self._send_error(401, 20003)
            return None
        match = _ACCOUNT_PATH.match(url.path)
        if match is None or match["account"] != self.fake.account_sid:
            self._send_error(404, 20404)
            return None
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        return match["account"], match["sid"], query

    def _read_form(self) -> dict:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode() if length else ""
        return {k: v[-1] for k, v in parse_qs(raw, keep_blank_values=True).items()}

    # -- HTTP methods -------------------------------------------------------------

    def do_POST(self):
        # read the body first: an unread body would corrupt the next request on this keep-alive connection
        fields = self._read_form()
        route = self._route()
        if route is None:
            return
        _, sid, _ = route
        if sid is not None:
            self._send_error(405, 20004, "Method not allowed")
            return
        self._create(fields)

    def do_GET(self):
        route = self._route()
        if route is None:
            return
        _, sid, query = route
        if sid is None:
            self._list(query)
            return
        message = self.fake._find(sid)
        if message is None:
            self._send_error(404, 20404)
        else:
            self._send_json(200, _message_json(message))

    # -- Messages resource ----------------------------------------------------------

    def _create(self, fields: dict) -> None:
        behaviour = self.fake._next_behaviour(fields.get("To", ""))
        if behaviour == "drop_before_create":
            self._drop()
            return
        if isinstance(behaviour, tuple) and behaviour[0] == "error":
            _, status, code = behaviour
            self._send_error(status, code)
            return

        error = _validate_create(fields)
        if error is not None:
            self._send_error(400, error)
            return

        if isinstance(behaviour, tuple) and behaviour[0] in ("slow", "land_late"):
            # the message is created when the delay ends, even if the client gave up meanwhile (as Twilio would)
            if self.fake._stopped_or_waited(behaviour[1]):
                self._drop()
                return
        created = self.fake._create(fields)

        if behaviour == "drop_after_create" or (isinstance(behaviour, tuple) and behaviour[0] == "land_late"):
            self._drop()
        elif behaviour == "timeout_after_create":
            self._hang_until_client_leaves()
        else:
            self._send_json(201, _message_json(created))

    def _hang_until_client_leaves(self) -> None:
        """Say nothing until the client hangs up (its read timeout), the fake stops, or MAX_HANG_SECONDS."""
        self.connection.settimeout(POLL_SECONDS)
        waited = 0.0
        while waited < MAX_HANG_SECONDS and not self.fake._stopping.is_set():
            try:
                if self.connection.recv(1) == b"":
                    break  # client closed its side
            except TimeoutError:
                waited += POLL_SECONDS
            except OSError:
                break
        self._drop()

    def _list(self, query: dict) -> None:
        messages = self.fake.messages
        if "To" in query:
            messages = [m for m in messages if m["to"] == query["To"]]
        if "From" in query:
            messages = [m for m in messages if m["from"] == query["From"]]
        for key, op in (("DateSent", "="), ("DateSent>", ">"), ("DateSent<", "<")):
            if key in query:
                bound = _parse_date_filter(query[key])
                if bound is None:
                    self._send_error(400, 20001, f"Invalid {key} value")
                    return
                messages = [m for m in messages if _date_matches(m["date_sent"], bound, op)]
        # newest first, like the real list (stable sort keeps creation order reversed on ties)
        messages = sorted(reversed(messages), key=lambda m: m["date_created"], reverse=True)

        try:
            page_size = min(int(query.get("PageSize", DEFAULT_PAGE_SIZE)), MAX_PAGE_SIZE)
            page = int(query.get("Page", 0))
        except ValueError:
            self._send_error(400, 20001, "Invalid paging parameter")
            return
        if page_size < 1 or page < 0:
            self._send_error(400, 20001, "Invalid paging parameter")
            return
        start = page * page_size
        chunk = messages[start : start + page_size]

        filters = {k: v for k, v in query.items() if k not in ("Page", "PageSize", "PageToken")}
        base = f"{API_PREFIX}/Accounts/{self.fake.account_sid}/Messages.json"

        def page_uri(number: int) -> str:
            params = dict(filters, PageSize=page_size, Page=number)
            if number > 0:
                params["PageToken"] = f"PASM{number * page_size}"
            return f"{base}?{urlencode(params)}"

        has_next = start + page_size < len(messages)
        self._send_json(
            200,
            {
                "end": start + len(chunk) - 1 if chunk else start,
                "first_page_uri": page_uri(0),
                "messages": [_message_json(m) for m in chunk],
                "next_page_uri": page_uri(page + 1) if has_next else None,
                "page": page,
                "page_size": page_size,
                "previous_page_uri": page_uri(page - 1) if page > 0 else None,
                "start": start,
                "uri": page_uri(page),
            },
        )


def _validate_create(fields: dict) -> int | None:
    """Twilio error code for an invalid create request, or None."""
    to = fields.get("To", "")
    if not _E164.match(to):
        return 21211
    if not fields.get("From") and not fields.get("MessagingServiceSid"):
        return 21603
    if not fields.get("Body"):
        return 21602
    return None
