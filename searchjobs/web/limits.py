"""Rate limits on the JSON API (Flask-Limiter, counters in Redis).

Who is counted:

- a caller with an API key (``Authorization: Bearer``): per key;
- an anonymous caller: per client IP, with stricter limits. The IP is the
  connection's address; behind reverse proxies, set
  ``SEARCHJOBS_TRUSTED_PROXIES`` to how many of them append to
  ``X-Forwarded-For`` and the address those proxies saw is used instead.
  Entries a client writes into that header itself are never trusted.

What is counted, per caller, in two budgets:

- submits (``POST /api/search-jobs``): ``SEARCHJOBS_RATE_LIMIT_KEYED``
  (default 120/minute) and ``SEARCHJOBS_RATE_LIMIT_ANONYMOUS`` (20/minute);
- every other ``/api`` request (status, lists, change feed, event streams,
  cancel, retry, delete, result links): ``SEARCHJOBS_RATE_LIMIT_KEYED_READS``
  (1200/minute) and ``SEARCHJOBS_RATE_LIMIT_ANONYMOUS_READS`` (300/minute).

Values use Flask-Limiter's notation ("20/minute", "5/second;100/hour").
Pages, health probes, images, ``/openapi.json``, ``/docs`` and the Twilio
webhook are not limited. ``SEARCHJOBS_RATE_LIMITS=off`` turns every limit off.

Answers: a limited response carries ``RateLimit-Limit``,
``RateLimit-Remaining`` and ``RateLimit-Reset`` (seconds until the window
resets), read in the same round trip as the hit (``OneTripRedisStorage``). Over the limit: 429 ``{"error": {"code": "rate_limited", ...}}`` with
``Retry-After`` in seconds.

When Redis (the counters' store) is unavailable (down, full, read-only,
loading: ``searchjobs.queue.REDIS_UNAVAILABLE``), Flask-Limiter's in-memory
fallback takes over: the same limits, counted per web process, so every
caller, anonymous or keyed, keeps being served and limited. With N web
processes a caller can get up to N times its budget meanwhile. The limiter
tries Redis again with a growing back-off and returns to the shared counters
once it answers. Losing Redis loses nothing (ARCHITECTURE.md), not even the
API for anonymous callers.
"""

from __future__ import annotations

import logging
import math
import time

from flask import Flask, Response, g, has_request_context, request
from flask_limiter import ApplicationLimit, Limiter, RateLimitExceeded, RequestLimit
from limits import parse_many
from limits.errors import StorageError
from limits.storage import RedisStorage
from redis.exceptions import NoScriptError

from searchjobs.config import Settings
from searchjobs.errors import ConfigError
from searchjobs.web import runtime as web_runtime
from searchjobs.web.auth import current_caller
from searchjobs.web.errors import error_response

log = logging.getLogger(__name__)

EXTENSION = "searchjobs.limiter"  # app.extensions key of this app's Limiter
KEY_PREFIX = "searchjobs:ratelimit"  # Redis key prefix of the counters
STRATEGY = "sliding-window-counter"  # constant cost per hit (two counters), no double burst at window edges
SUBMIT_ENDPOINT = "api.create_job"


def _is_submit() -> bool:
    return request.endpoint == SUBMIT_ENDPOINT


def _not_api() -> bool:
    return not request.path.startswith("/api/")


def client_ip(trusted_proxies: int) -> str:
    """The client's address: the connection's, or the one our `trusted_proxies` proxies recorded.

    Each proxy appends the address it received from, so the last `trusted_proxies` hops of
    X-Forwarded-For + the connection are ours and the hop before them is the client. Anything
    further left was written by the client and proves nothing.
    """
    remote = request.remote_addr or "unknown"
    if trusted_proxies <= 0:
        return remote
    forwarded = [hop.strip() for hop in request.headers.get("X-Forwarded-For", "").split(",") if hop.strip()]
    chain = forwarded + [remote]
    return chain[max(0, len(chain) - 1 - trusted_proxies)]


def rate_key_function(trusted_proxies: int):
    def rate_key() -> str:
        """The bucket of this request: the caller's API key (client id), else the client's IP address."""
        caller = current_caller()  # a bad Authorization header answers 401 here, before any counting
        if caller.anonymous:
            return f"ip:{client_ip(trusted_proxies)}"
        return f"key:{caller.client_id}"

    return rate_key


class OneTripRedisStorage(RedisStorage):
    """`limits`' Redis storage whose sliding-window hit also reads the window back, in one pipeline.

    Flask-Limiter asks the storage for the window again to write the RateLimit-* headers (a second
    round trip per request); the window read with the hit is kept for this request and answers that
    question instead. Outside a request, or for a window not hit in this request, Redis is asked.
    """

    STORAGE_SCHEME = ["searchjobs+redis"]

    def acquire_sliding_window_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        keys = [self.prefixed_key(self._previous_window_key(key)), self.prefixed_key(self._current_window_key(key))]
        # EVALSHA by hand: a pipeline holding Script objects first asks SCRIPT EXISTS, a round trip of its own
        pipe = self.get_connection().pipeline(transaction=False)
        pipe.evalsha(self.lua_acquire_sliding_window.sha, 2, *keys, limit, expiry, amount)
        pipe.evalsha(self.lua_sliding_window.sha, 2, *keys, expiry)
        acquired, window = pipe.execute(raise_on_error=False)
        if isinstance(acquired, NoScriptError):  # Redis restarted or flushed its scripts: load them, run again
            acquired = self.lua_acquire_sliding_window(keys, [limit, expiry, amount])
            window = self.lua_sliding_window(keys, [expiry])
        elif isinstance(window, NoScriptError):
            window = self.lua_sliding_window(keys, [expiry])
        for answer in (acquired, window):
            if isinstance(answer, Exception):
                raise answer
        if has_request_context():
            g.setdefault("rate_windows", {})[(key, expiry)] = _window_tuple(window)
        return bool(acquired)

    def get_sliding_window(self, key: str, expiry: int) -> tuple[int, float, int, float]:
        if has_request_context():
            seen = g.get("rate_windows", {}).get((key, expiry))
            if seen is not None:
                return seen
        return super().get_sliding_window(key, expiry)


def _window_tuple(window) -> tuple[int, float, int, float]:
    """The sliding-window script's answer as `limits` returns it: counts, and TTLs in seconds."""
    if not window:
        return 0, 0.0, 0, 0.0
    return (int(window[0] or 0), max(0, float(window[1] or 0)) / 1000,
            int(window[2] or 0), max(0, float(window[3] or 0)) / 1000)


class ApiLimiter(Limiter):
    """Flask-Limiter whose in-memory fallback counts while Redis is unavailable.

    The fallback handles the first failure of the shared store itself; should an error
    still come through (the store failing between two of its checks), the request is served.
    """

    def _check_request_limit(self, callable_name: str | None = None, in_middleware: bool = True) -> None:
        try:
            super()._check_request_limit(callable_name=callable_name, in_middleware=in_middleware)
        except StorageError as exc:
            log.warning("rate limits skipped: storage unavailable (%s)",
                        type(exc.storage_error).__name__, extra={"path": request.path})


def _check_limit(value: str, name: str) -> str:
    try:
        if not parse_many(value):
            raise ValueError
    except ValueError:
        raise ConfigError(f"{name} must be a rate limit like '20/minute', got {value!r}") from None
    return value


def build_limiter(app: Flask, settings: Settings) -> ApiLimiter:
    submit_keyed = _check_limit(settings.rate_limit_keyed, "SEARCHJOBS_RATE_LIMIT_KEYED")
    submit_anonymous = _check_limit(settings.rate_limit_anonymous, "SEARCHJOBS_RATE_LIMIT_ANONYMOUS")
    read_keyed = _check_limit(settings.rate_limit_keyed_reads, "SEARCHJOBS_RATE_LIMIT_KEYED_READS")
    read_anonymous = _check_limit(settings.rate_limit_anonymous_reads, "SEARCHJOBS_RATE_LIMIT_ANONYMOUS_READS")

    def submit_limit() -> str:
        return submit_anonymous if current_caller().anonymous else submit_keyed

    def read_limit() -> str:
        return read_anonymous if current_caller().anonymous else read_keyed

    rt = app.extensions[web_runtime.EXTENSION]
    limiter = ApiLimiter(
        rate_key_function(settings.trusted_proxies),
        application_limits=[
            ApplicationLimit(submit_limit, scope="submit", exempt_when=lambda: not _is_submit()),
            ApplicationLimit(read_limit, scope="read", exempt_when=_is_submit),
        ],
        strategy=STRATEGY,
        # the Runtime's pool: short timeouts and one retry, so a dead Redis answers fast;
        # with a pool given, the URI only tells `limits` which storage class to use: ours, one round trip
        storage_uri="searchjobs+redis://",
        storage_options={"connection_pool": rt.redis.connection_pool, "key_prefix": KEY_PREFIX,
                         "wrap_exceptions": True},
        headers_enabled=False,  # written by _headers below: RateLimit-Reset in seconds, errors handled
        # Redis unavailable: the same limits, counted in this process, until Redis answers again
        in_memory_fallback_enabled=True,
        swallow_errors=False,
    )
    limiter.request_filter(_not_api)
    limiter.init_app(app)
    return limiter


def _seconds_to_reset(current: RequestLimit) -> int:
    """Seconds until the window has room again (from the window read with the hit: no round trip)."""
    reset_at, _ = current.window
    return max(1, math.ceil(reset_at - time.time()))


def init_app(app: Flask) -> None:
    settings: Settings = app.extensions[web_runtime.EXTENSION].settings
    if not settings.rate_limits:
        return
    limiter = build_limiter(app, settings)
    app.extensions[EXTENSION] = limiter

    @app.errorhandler(RateLimitExceeded)
    def _too_many(exc: RateLimitExceeded):
        retry_after = 60
        current = limiter.current_limit
        if current is not None:
            try:
                retry_after = _seconds_to_reset(current)
            except StorageError:
                pass
        return error_response(429, "rate_limited", f"rate limit exceeded ({exc.description}); "
                              f"retry after {retry_after} seconds", headers={"Retry-After": str(retry_after)})

    @app.after_request
    def _headers(response: Response) -> Response:
        current = limiter.current_limit
        if current is None:
            return response
        try:
            reset_in = _seconds_to_reset(current)
            remaining = current.remaining
        except StorageError:
            return response  # the counter store went away after the check: no headers, no error
        response.headers["RateLimit-Limit"] = str(current.limit.amount)
        response.headers["RateLimit-Remaining"] = str(max(0, remaining))
        response.headers["RateLimit-Reset"] = str(reset_in)
        return response
