"""Live progress as Server-Sent Events, read from the `search_job_events` table.

    GET /api/search-jobs/<job_id>/events   (same visibility as GET /api/search-jobs/<job_id>)
    GET /api/results/<token>/events        (the result page's link)

Each persisted step is one SSE event: `id:` is the event row id (the cursor),
`event:` is `progress` for every non-final step and `completed`, `failed` or
`cancelled` for the final one, `data:` is JSON (kind, status, progress, stage,
version). After the final event the stream closes. `Last-Event-ID` (or
`?last_event_id=`) resumes after that id: per job, event ids grow in commit
order (each step locks the job row before it draws an id), so "id > cursor"
has no gaps and no duplicates. A stream opened on a finished job with nothing
left to send answers 204, which tells EventSource to stop reconnecting.

How a stream waits: it subscribes to `searchjobs:events:<job_id>`, on which
every write of a newer view publishes the job's new version (a read's refill of a
missing view does not: it announces nothing new), and blocks on that socket.
On a wake-up (and every heartbeat as a backstop) it checks out a database
connection, reads the events after its cursor, and returns the connection: an
idle stream holds no database connection. If Redis is down it re-reads the
table every POLL_SECONDS instead. While idle it sends `: keep-alive` every
SEARCHJOBS_SSE_HEARTBEAT seconds so proxies keep the connection open.

How many streams a process holds: gunicorn runs gthread workers with
WEB_THREADS = 16 threads per process, and a stream holds one thread for its
whole life. SEARCHJOBS_MAX_STREAMS (default 10) caps streams per process so
at least 6 threads always remain for submits, status polls, pages and health
checks: streams can slow nothing else down. Beyond the cap a stream request
gets 503 with Retry-After and the page falls back to polling every 2 s. So
one process serves 10 live pages, WEB_CONCURRENCY = 2 processes serve 20;
each idle stream costs one thread and one Redis connection, no database
connection. A stream ends after SEARCHJOBS_STREAM_MAX_SECONDS (default 300)
so that a closed tab whose disconnect went unnoticed (noticed only at the next
write, i.e. within a heartbeat) frees its slot, and deploys drain; the browser
reconnects with Last-Event-ID and misses nothing.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator
from threading import BoundedSemaphore

from flask import Blueprint, Response, current_app, request

from searchjobs.db.engine import translate_errors
from searchjobs.db.tables import FINISHED_STATUSES
from searchjobs.errors import DependencyUnavailable
from searchjobs.jobs import store as job_queries
from searchjobs.jobs.cache import TOMBSTONE_VERSION, events_channel
from searchjobs.queue import REDIS_UNAVAILABLE
from searchjobs.runtime import Runtime
from searchjobs.web.api import result_job, visible_job
from searchjobs.web.auth import current_caller
from searchjobs.web.errors import ApiError
from searchjobs.web.runtime import runtime

log = logging.getLogger(__name__)

_TOMBSTONE_WAKE_UP = str(TOMBSTONE_VERSION).encode()  # what a delete publishes on the job's channel

bp = Blueprint("events", __name__, url_prefix="/api")

# Settings, from app.config or the environment; tests shorten them through app.config.
STREAM_SETTINGS = {
    "SEARCHJOBS_MAX_STREAMS": 10,  # concurrent streams per process (of WEB_THREADS = 16 threads)
    "SEARCHJOBS_SSE_HEARTBEAT": 15.0,  # seconds between keep-alive comments on an idle stream
    "SEARCHJOBS_STREAM_MAX_SECONDS": 300.0,  # a stream then closes; the client resumes with Last-Event-ID
}
POLL_SECONDS = 2.0  # re-read interval when Redis (the wake-up channel) is unavailable
RECONNECT_MS = 2000  # the `retry:` hint sent to EventSource
BATCH = 200  # events read per database round trip
FINAL_KINDS = ("completed", "failed", "cancelled")
GATE = "searchjobs.event_streams"  # app.extensions key of the per-process stream semaphore


@bp.record_once
def _configure(state) -> None:
    for name, default in STREAM_SETTINGS.items():
        raw = os.environ.get(name)
        state.app.config.setdefault(name, type(default)(raw) if raw else default)


def _gate() -> BoundedSemaphore:
    """The per-process cap on open streams, sized from config on first use."""
    extensions = current_app.extensions
    if GATE not in extensions:
        extensions.setdefault(GATE, BoundedSemaphore(int(current_app.config["SEARCHJOBS_MAX_STREAMS"])))
    return extensions[GATE]


def _cursor() -> int:
    given = request.headers.getlist("Last-Event-ID") + request.args.getlist("last_event_id")
    if any(not raw.isascii() or not raw.isdigit() or len(raw) > 18 for raw in given) or \
            len(request.args.getlist("last_event_id")) > 1:  # every value is checked, not only the one used
        raise ApiError(400, "invalid_last_event_id", "Last-Event-ID must be an event id this API sent")
    return int(given[0]) if given else 0


@bp.get("/search-jobs/<job_id>/events")
def job_events(job_id: str):
    view, _ = visible_job(job_id, current_caller())
    return _open_stream(view)


@bp.get("/results/<token>/events")
def result_events(token: str):
    view, _ = result_job(token)
    if view is None:
        raise ApiError(404, "not_found", "no such result link")
    return _open_stream(view)


def _open_stream(view: dict) -> Response:
    cursor = _cursor()
    gate = _gate()
    if not gate.acquire(blocking=False):
        raise ApiError(503, "too_many_streams", "too many live streams on this server; poll the status instead")
    config = current_app.config
    stream = EventStream(
        runtime(), view["job_id"], cursor, gate,
        heartbeat=float(config["SEARCHJOBS_SSE_HEARTBEAT"]),
        max_seconds=float(config["SEARCHJOBS_STREAM_MAX_SECONDS"]),
    )
    try:
        first = stream.start()
    except BaseException:
        stream.close()
        raise
    if not first and view["status"] in FINISHED_STATUSES:
        stream.close()
        return Response(status=204)  # finished and fully sent: EventSource stops reconnecting
    response = Response(stream.iterate(first), mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Accel-Buffering"] = "no"  # nginx and friends: do not buffer the stream
    response.call_on_close(stream.close)  # runs even if the body is never iterated
    return response


def format_event(event: dict) -> str:
    kind = event["kind"]
    data = {
        "kind": kind,
        "status": event["status"],
        "progress": event["progress"],
        "stage": event["stage"],
        "version": event["version"],
        "at": event["created_at"].isoformat(),
    }
    name = kind if kind in FINAL_KINDS else "progress"
    return f"id: {event['id']}\nevent: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


class EventStream:
    """One client's stream: a cursor, a wake-up subscription, and a slot of the per-process cap."""

    def __init__(self, rt: Runtime, job_id: str, cursor: int, gate: BoundedSemaphore, *,
                 heartbeat: float, max_seconds: float):
        self.rt = rt
        self.job_id = job_id
        self.cursor = cursor
        self.heartbeat = heartbeat
        self.deadline = time.monotonic() + max_seconds
        self._gate = gate
        self._pubsub = None
        self._closed = False
        self.gone = False  # a tombstone's wake-up came: the job was deleted

    def start(self) -> list[dict]:
        """Subscribe first, then read: a step committed in between still wakes us."""
        self._subscribe()
        return self._read()

    def _subscribe(self) -> None:
        pubsub = self.rt.redis.pubsub(ignore_subscribe_messages=True)
        try:
            pubsub.subscribe(events_channel(self.job_id))
        except REDIS_UNAVAILABLE as exc:
            log.info("event stream polls: redis unavailable (%s)", type(exc).__name__,
                     extra={"job_id": self.job_id})
            pubsub.close()
            return
        self._pubsub = pubsub

    @translate_errors
    def _read(self) -> list[dict]:
        # a connection only for this read: an idle stream holds none
        with self.rt.db.connect() as conn:
            return job_queries.events(conn, self.job_id, after=self.cursor, limit=BATCH)

    def _wait(self, seconds: float) -> bool:
        """Block up to `seconds` for a wake-up; True if one came. Without Redis, sleep a poll interval.

        A wake-up carrying the tombstone's version means the job was deleted (`self.gone`).
        """
        if self._pubsub is None:
            time.sleep(min(seconds, POLL_SECONDS))
            return True  # re-read the table
        end = time.monotonic() + seconds
        try:
            while (left := end - time.monotonic()) > 0:
                message = self._pubsub.get_message(timeout=left)
                if message is not None:
                    while message is not None:  # several steps, one read
                        self.gone = self.gone or message.get("data") == _TOMBSTONE_WAKE_UP
                        message = self._pubsub.get_message(timeout=0)
                    return True
        except REDIS_UNAVAILABLE as exc:
            log.info("event stream falls back to polling: %s", type(exc).__name__, extra={"job_id": self.job_id})
            self._pubsub.close()
            self._pubsub = None
            return True
        return False

    def iterate(self, first: list[dict]) -> Iterator[str]:
        yield f"retry: {RECONNECT_MS}\n\n"
        events = first
        idle_since = time.monotonic()
        while True:
            for event in events:
                self.cursor = event["id"]
                yield format_event(event)
                if event["status"] in FINISHED_STATUSES:
                    return
            if events:
                idle_since = time.monotonic()
            now = time.monotonic()
            if now >= self.deadline:
                return
            if now - idle_since >= self.heartbeat:
                yield ": keep-alive\n\n"
                idle_since = now
            # wake on a publish; re-read anyway at each heartbeat in case a publish was missed
            self._wait(min(self.heartbeat - (now - idle_since), self.deadline - now))
            if self.gone:  # deleted: nothing more will come, and the slot is worth freeing now
                return
            try:
                events = self._read()
            except DependencyUnavailable:
                # the database went away mid-stream: end it; the client resumes with Last-Event-ID
                log.warning("event stream ended: database unavailable", extra={"job_id": self.job_id})
                return

    def close(self) -> None:
        """Release the subscription and the slot, once (the WSGI server calls it when the response ends)."""
        if self._closed:
            return
        self._closed = True
        if self._pubsub is not None:
            try:
                self._pubsub.close()
            except REDIS_UNAVAILABLE:
                pass
            self._pubsub = None
        self._gate.release()

