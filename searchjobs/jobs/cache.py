"""The Redis view of each job: versioned writes, reads that never fail a request.

A write carries the row's version and replaces the cached view only if it is
newer (a Lua script, so check-and-set is atomic), then publishes the version on
the job's channel to wake live streams: one round trip. A refill from Postgres
goes through the same script, so a slow writer can never move a job backwards;
it publishes only when it replaces an older view (a write, and its wake-up, was
missed), not when it fills a missing one (the writer's publish already woke
every stream for that version).

How long a view can be wrong is bounded:
- a view of an unfinished job lives about one lease (`live_ttl`), a finished
  one the full TTL, so a skipped write heals by expiry at worst;
- the reconciler re-writes the views of rows changed since its last pass
  (`write_rows`), so a skipped terminal write is repaired within one pass;
- a deleted job leaves a tombstone whose version no refill can beat; if Redis
  refused it, the reconciler writes it again from `job_deletions`.

A worker writes the views of its intermediate steps behind it (`write_behind`):
Postgres has committed the step before the worker goes on, and a view is only
a cache, so one thread per process sends them, coalesced per job (the newest
version wins) and pipelined. Terminal views are written in line as before, so
a finished job's view is in Redis when the job function returns; a late
intermediate view loses to it at the version check.
"""

from __future__ import annotations

import json
import logging
import threading
from datetime import datetime

import redis

from searchjobs import defaults, metrics
from searchjobs.db.engine import translate_errors
from searchjobs.db.tables import FINISHED_STATUSES
from searchjobs.jobs import store as job_queries
from searchjobs.queue import REDIS_UNAVAILABLE

log = logging.getLogger(__name__)

# A deleted job's view: a version no row ever reaches, so the write script refuses every later refill.
TOMBSTONE_VERSION = 2**53
TOMBSTONE = ""

# KEYS[1] view hash, KEYS[2] wake-up channel; ARGV version, view json, ttl seconds, and when to publish:
# WAKE_ALWAYS (a write of a new state), or WAKE_IF_REPLACING (a refill: only over an older view)
_WRITE_IF_NEWER = """
local current = redis.call('HGET', KEYS[1], 'v')
if current and tonumber(current) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'd', ARGV[2])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
if current or ARGV[4] == 'always' then
  redis.call('PUBLISH', KEYS[2], ARGV[1])
end
return 1
"""
WAKE_ALWAYS, WAKE_IF_REPLACING = "always", "if-replacing"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def job_view(row: dict) -> dict:
    """The public view of a job row: what the cache holds and the API serves.

    Never contains the phone number or the result token. `results` and
    `client_id` are here for the web layer to decide who may see them.
    """
    error = {"code": row["error_code"] or "error", "message": row["error"]} if row.get("error") else None
    return {
        "job_id": row["job_id"],
        "status": row["status"],
        "progress": row["progress"],
        "stage": row["stage"],
        "version": row["version"],
        "attempts": row["attempts"],
        "categories": list(row["categories"] or []),
        "sms": row.get("phone_number") is not None,
        "cancel_requested": bool(row.get("cancel_requested")),
        "error": error,
        "results": row.get("results"),
        "image_url": row.get("original_image_url"),
        "client_id": row.get("client_id"),
        "created_at": _iso(row.get("created_at")),
        "updated_at": _iso(row.get("updated_at")),
        "started_at": _iso(row.get("started_at")),
        "finished_at": _iso(row.get("finished_at")),
    }


def cache_key(job_id: str) -> str:
    return defaults.CACHE_PREFIX + job_id


def events_channel(job_id: str) -> str:
    return defaults.EVENTS_CHANNEL_PREFIX + job_id


class Gone(Exception):
    """The cache holds a tombstone: the job was deleted (no need to ask Postgres)."""


class JobCache:
    """Cache of job views. Every method degrades to a miss / no-op when Redis is unavailable."""

    def __init__(self, connection: redis.Redis, ttl: int = defaults.CACHE_TTL,
                 live_ttl: int = defaults.LEASE_SECONDS):
        self.connection = connection
        self.ttl = ttl
        self.live_ttl = min(live_ttl, ttl)  # an unfinished job's view: about one lease
        self._write = connection.register_script(_WRITE_IF_NEWER)
        self._behind: ViewWriter | None = None
        self._behind_lock = threading.Lock()

    def _args(self, view: dict, wake: str = WAKE_ALWAYS) -> dict:
        ttl = self.ttl if view["status"] in FINISHED_STATUSES else self.live_ttl
        return {"keys": [cache_key(view["job_id"]), events_channel(view["job_id"])],
                "args": [view["version"], json.dumps(view, separators=(",", ":")), ttl, wake]}

    def write(self, view: dict, wake: str = WAKE_ALWAYS) -> bool | None:
        """Store `view` unless a newer version is cached. True written, False older, None Redis down."""
        try:
            written = self._write(**self._args(view, wake))
        except REDIS_UNAVAILABLE as exc:
            log.warning("cache write skipped: %s", type(exc).__name__, extra={"job_id": view["job_id"]})
            return None
        return bool(written)

    def write_row(self, row: dict) -> bool | None:
        """The view of a state just written to Postgres: live streams are woken."""
        return self.write(job_view(row))

    def refill_row(self, row: dict) -> bool | None:
        """The view of a row read from Postgres after a miss: streams are woken only if it replaces an
        older view (a write whose wake-up was missed), not where no view was cached."""
        return self.write(job_view(row), WAKE_IF_REPLACING)

    def write_behind(self, row: dict) -> None:
        """Queue the view of `row` for this process's writer thread and return at once (see the module doc)."""
        if self._behind is None:
            with self._behind_lock:
                if self._behind is None:
                    self._behind = ViewWriter(self)
        self._behind.put(job_view(row))

    def flush_behind(self, timeout: float = 5.0) -> bool:
        """Wait until the views queued by `write_behind` are sent (or dropped: Redis down). False on timeout."""
        return self._behind is None or self._behind.flush(timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Send the views still queued behind and end the writer thread; call before closing the connection
        (closed under it, the writer's pipeline failed and the queued views were lost)."""
        with self._behind_lock:
            writer, self._behind = self._behind, None
        if writer is not None:
            writer.stop(timeout)

    def write_views(self, views: list[dict]) -> None:
        """Version-checked writes of many views in one round trip; Redis errors propagate.

        EVALSHA by hand: a pipeline holding Script objects first asks SCRIPT EXISTS, a round trip of
        its own. A Redis that forgot the script (restarted, flushed) gets those views again through it.
        """
        pipe = self.connection.pipeline(transaction=False)
        for view in views:
            args = self._args(view)
            pipe.evalsha(self._write.sha, len(args["keys"]), *args["keys"], *args["args"])
        answers = pipe.execute(raise_on_error=False)
        for view, answer in zip(views, answers, strict=True):
            if isinstance(answer, redis.exceptions.NoScriptError):
                self._write(**self._args(view))
            elif isinstance(answer, Exception):
                raise answer

    def write_rows(self, rows: list[dict]) -> int:
        """Version-checked writes of many rows in one round trip; returns how many views were behind.

        Redis being unavailable propagates: the caller (the reconciler) retries the whole pass.
        """
        if not rows:
            return 0
        pipe = self.connection.pipeline(transaction=False)
        for row in rows:
            self._write(client=pipe, **self._args(job_view(row)))
        return sum(1 for written in pipe.execute() if written)

    def read(self, job_id: str) -> dict | None:
        """The cached view, or None on a miss or when Redis is down or slow. Raises Gone for a tombstone."""
        try:
            raw = self.connection.hget(cache_key(job_id), "d")
        except REDIS_UNAVAILABLE as exc:
            log.warning("cache read skipped: %s", type(exc).__name__, extra={"job_id": job_id})
            return None
        if raw is None:
            return None
        if raw == b"":
            raise Gone(job_id)
        return json.loads(raw)

    def delete(self, job_id: str, token_hash: str | None = None) -> None:
        """Replace the view with a tombstone (a refill that read the row before the delete cannot
        bring it back) and drop the result-link mapping."""
        try:
            self.delete_many([(job_id, token_hash)])
        except REDIS_UNAVAILABLE as exc:
            # the reconciler re-writes the tombstone from job_deletions within one pass
            log.warning("cache delete skipped: %s", type(exc).__name__, extra={"job_id": job_id})

    def delete_many(self, deleted: list[tuple[str, str | None]]) -> None:
        """Tombstones for many (job_id, token_hash) pairs in one round trip; Redis errors propagate."""
        pipe = self.connection.pipeline(transaction=False)
        for job_id, token_hash in deleted:
            self._write(client=pipe, keys=[cache_key(job_id), events_channel(job_id)],
                        args=[TOMBSTONE_VERSION, TOMBSTONE, self.ttl, WAKE_ALWAYS])
            if token_hash is not None:
                pipe.delete(token_key(token_hash))
        pipe.execute()


class ViewWriter(threading.Thread):
    """Sends queued views behind the worker: the newest per job, all pending ones in one pipeline.

    A view that cannot be sent (Redis down) is dropped with a warning, as an in-line write would
    be skipped: it heals by expiry or at the reconciler's next pass.
    """

    def __init__(self, cache: JobCache):
        super().__init__(name="view-writer", daemon=True)
        self.cache = cache
        self._pending: dict[str, dict] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._stopping = False
        self.start()

    def put(self, view: dict) -> None:
        with self._lock:
            queued = self._pending.get(view["job_id"])
            if queued is None or queued["version"] < view["version"]:
                self._pending[view["job_id"]] = view
            self._idle.clear()
        self._wake.set()

    def flush(self, timeout: float) -> bool:
        return self._idle.wait(timeout)

    def stop(self, timeout: float) -> None:
        """Send what is queued, then end the thread (waiting up to `timeout` seconds for it)."""
        self._stopping = True
        self._wake.set()
        self.join(timeout)

    def run(self) -> None:
        while True:
            if not self._stopping:  # stop() sets the flag, then the wake-up: neither can be missed
                self._wake.wait()
            self._wake.clear()
            with self._lock:
                views, self._pending = list(self._pending.values()), {}
            if not views and self._stopping:
                return
            if views:
                try:
                    self.cache.write_views(views)
                except REDIS_UNAVAILABLE as exc:
                    log.warning("cache write skipped: %s", type(exc).__name__,
                                extra={"job_id": views[0]["job_id"], "views": len(views)})
                except Exception:  # noqa: BLE001 - the thread must outlive any one bad batch
                    log.exception("cache write-behind failed", extra={"job_id": views[0]["job_id"]})
            with self._lock:
                if not self._pending:
                    self._idle.set()


def read_through(cache: JobCache, engine, job_id: str) -> tuple[dict | None, str]:
    """Cache first, Postgres behind it, refilling the cache on a miss.

    Returns (view or None, "hit" | "miss"). When Postgres is down, a cached view
    is still served; a miss then raises DependencyUnavailable (503 upstream).
    """
    try:
        view = cache.read(job_id)
    except Gone:
        metrics.CACHE_LOOKUPS.labels("hit").inc()
        return None, "hit"
    if view is not None:
        metrics.CACHE_LOOKUPS.labels("hit").inc()
        return view, "hit"
    metrics.CACHE_LOOKUPS.labels("miss").inc()

    @translate_errors
    def from_db() -> dict | None:
        with engine.connect() as conn:
            return job_queries.get(conn, job_id)

    row = from_db()
    if row is None:
        return None, "miss"
    cache.refill_row(row)
    return job_view(row), "miss"


def token_key(token_hash: str) -> str:
    # a namespace of its own: no job id can name a token key (a view read would meet a string)
    return defaults.TOKEN_CACHE_PREFIX + token_hash


def read_through_token(cache: JobCache, engine, token_hash: str) -> tuple[dict | None, str]:
    """The job behind a result-link token hash: the token -> job id mapping is cached too."""
    try:
        job_id = cache.connection.get(token_key(token_hash))
    except REDIS_UNAVAILABLE:
        job_id = None
    if job_id is not None:
        view, source = read_through(cache, engine, job_id.decode())
        if view is not None:
            return view, source

    @translate_errors
    def from_db() -> dict | None:
        with engine.connect() as conn:
            return job_queries.get_by_token_hash(conn, token_hash)

    if job_id is None:  # the token was not cached (read_through counted the other case)
        metrics.CACHE_LOOKUPS.labels("miss").inc()
    row = from_db()
    if row is None:
        return None, "miss"
    try:
        cache.connection.set(token_key(token_hash), row["job_id"], ex=cache.ttl)
    except REDIS_UNAVAILABLE:
        pass
    cache.refill_row(row)
    return job_view(row), "miss"
