"""RQ queues, Redis connections, and enqueue-by-dotted-path helpers.

The RQ job is only a pointer to a Postgres row: its id is our job_id and its
only argument is that id. Losing Redis loses pointers, never jobs: the
reconciler rebuilds them from Postgres.

Retries are not declared with RQ's Retry: a retry's due time lives on the row
(`run_after`, `next_attempt_at`) and the scheduler enqueues it when due, so a
flushed Redis cannot lose a scheduled retry, and workers need no RQ scheduler.
"""

from __future__ import annotations

import logging
import random
import socket
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import unquote, urlsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry as RedisRetry
from redis.sentinel import Sentinel
from rq import Queue
from rq.job import Job, JobStatus
from rq.utils import utcparse

from searchjobs import defaults
from searchjobs.errors import ConfigError

log = logging.getLogger(__name__)

# Every way Redis can be unavailable, with one meaning everywhere (web, worker, scheduler, cache, limiter):
# treat it like a closed port. Nothing in Redis is the truth, so each caller degrades instead of failing.
REDIS_UNAVAILABLE = (
    redis.exceptions.ConnectionError,  # refused, reset, closed; also BusyLoadingError (LOADING a dataset)
    redis.exceptions.TimeoutError,  # slow or cut off
    # an error answer: OOM (full under `maxmemory-policy noeviction`), READONLY (a replica, e.g. the old
    # primary during a failover), MISCONF (cannot persist), NOREPLICAS, BUSY, and any refused command:
    # nothing Redis holds is the truth, so a refusal is handled like an outage, never as a 500
    redis.exceptions.ResponseError,
    redis.exceptions.MasterDownError,  # MASTERDOWN: a replica cut off from its primary, serving no data
)


# A Redis that vanished without a FIN or RST (a cut link) is noticed in seconds on every connection,
# the worker's blocking one too (no socket timeout there: BLPOP waits for minutes): keepalive probes
# after 5 s idle, every 2 s, and TCP_USER_TIMEOUT closes a connection whose data (or probes) went
# unacknowledged for 10 s. Linux socket options; where the platform lacks one, it is left out.
KEEPALIVE_IDLE, KEEPALIVE_INTERVAL, KEEPALIVE_COUNT = 5, 2, 3  # seconds, seconds, probes
TCP_USER_TIMEOUT_MS = 10000


def keepalive_options() -> dict[int, int]:
    """`socket_keepalive_options` for redis-py: {socket option: value}, each set at IPPROTO_TCP level."""
    wanted = {"TCP_KEEPIDLE": KEEPALIVE_IDLE, "TCP_KEEPINTVL": KEEPALIVE_INTERVAL,
              "TCP_KEEPCNT": KEEPALIVE_COUNT, "TCP_USER_TIMEOUT": TCP_USER_TIMEOUT_MS}
    return {getattr(socket, name): value for name, value in wanted.items() if hasattr(socket, name)}


SENTINEL_SCHEMES = ("redis+sentinel", "valkey+sentinel")  # as the `limits` library (Flask-Limiter) spells them
SENTINEL_PORT = 26379  # a sentinel's port when the URL names none
SENTINEL_TIMEOUT = 0.5  # seconds per question to one sentinel; the next one is asked after it


@dataclass(frozen=True)
class SentinelURL:
    """`redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/service[/db]`."""

    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = None


def is_sentinel_url(url: str) -> bool:
    return url.split("://", 1)[0].lower() in SENTINEL_SCHEMES


def parse_sentinel_url(url: str) -> SentinelURL:
    """The sentinels, the service (master) name, the database and the credentials of a Sentinel URL.

    The password (and user) are used for the master and for the sentinels alike, as `limits` does.
    """
    parts = urlsplit(url)
    if parts.scheme.lower() not in SENTINEL_SCHEMES:
        raise ConfigError(f"REDIS_URL is not a Sentinel URL: scheme {parts.scheme!r}")
    netloc = parts.netloc.rpartition("@")[2]
    sentinels = []
    for location in netloc.split(","):
        one = urlsplit("//" + location)  # each host as its own netloc: "[::1]:26379", "h", "h:26380"
        try:
            host, port = one.hostname, one.port
        except ValueError:
            raise ConfigError("REDIS_URL has a bad sentinel port") from None
        if not host:
            raise ConfigError("REDIS_URL (Sentinel) names at least one sentinel host")
        sentinels.append((host, port or SENTINEL_PORT))
    path = [p for p in parts.path.split("/") if p]
    if not path or len(path) > 2:
        raise ConfigError("REDIS_URL (Sentinel) ends with /SERVICE or /SERVICE/DB")
    return SentinelURL(
        sentinels=tuple(sentinels), service=unquote(path[0]), db=int(path[1]) if len(path) == 2 else 0,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


def check_sentinel_service(url: str) -> None:
    """At start: refuse a Sentinel URL whose sentinels answer but know no primary of that name.

    Sentinels that do not answer are an outage, not a mistake: the process starts and waits for them.
    """
    if not is_sentinel_url(url):
        return
    target = parse_sentinel_url(url)
    answered = False
    for host, port in target.sentinels:
        client = redis.Redis(host=host, port=port, username=target.username, password=target.password,
                             socket_timeout=SENTINEL_TIMEOUT, socket_connect_timeout=SENTINEL_TIMEOUT,
                             retry=RedisRetry(NoBackoff(), 0))
        try:
            masters = client.sentinel_masters()
        except redis.exceptions.RedisError:
            continue
        finally:
            client.close()
        if target.service in masters:
            return
        answered = True
    if answered:
        raise ConfigError(f"REDIS_URL: the sentinels know no primary named {target.service!r}")


def connect(url: str, *, socket_timeout: float | None = defaults.REDIS_SOCKET_TIMEOUT) -> redis.Redis:
    """A Redis client that fails fast: one retry, short timeouts, TCP keepalives.

    The web process uses the default short socket timeout so a slow Redis never
    hangs a request; workers pass `socket_timeout=None` for RQ's blocking pops
    (a dead peer is then noticed by the keepalives and TCP_USER_TIMEOUT).

    `redis://` and `rediss://` name the server; `redis+sentinel://` names sentinels, and the
    client asks them for the current primary at every new connection, so after a failover the
    next command (after one that fails) goes to the promoted replica.
    """
    options = dict(
        socket_timeout=socket_timeout,
        socket_connect_timeout=defaults.REDIS_SOCKET_TIMEOUT if socket_timeout else 2.0,
        socket_keepalive=True,
        socket_keepalive_options=keepalive_options(),
        retry=RedisRetry(NoBackoff(), 1),
        health_check_interval=30,
    )
    if not is_sentinel_url(url):
        return redis.Redis.from_url(url, **options)
    target = parse_sentinel_url(url)
    auth = {k: v for k, v in (("username", target.username), ("password", target.password)) if v}
    sentinel = Sentinel(
        list(target.sentinels),
        # no retries on a sentinel: a dead one costs one short timeout, then the next is asked
        # (redis-py's default retries with backoff made a lookup with every sentinel down take minutes)
        sentinel_kwargs={"socket_timeout": SENTINEL_TIMEOUT, "socket_connect_timeout": SENTINEL_TIMEOUT,
                         "socket_keepalive": True, "socket_keepalive_options": keepalive_options(),
                         "retry": RedisRetry(NoBackoff(), 0), **auth},
    )
    return sentinel.master_for(target.service, db=target.db, **auth, **options)


def search_queue(connection: redis.Redis) -> Queue:
    return Queue(defaults.SEARCH_QUEUE, connection=connection)


def notification_queue(connection: redis.Redis) -> Queue:
    return Queue(defaults.NOTIFICATION_QUEUE, connection=connection)


def rq_job_id(job_id: str, attempts: int) -> str:
    """The RQ id of the pointer for a job's next try: our job_id, suffixed after the first try.

    A retry gets its own id because it is enqueued while the RQ job of the try
    before is still finishing, and RQ would mark a shared id finished. RQ ids
    allow only letters, digits, "_" and "-"; job ids all have one length, so
    "<job_id>-<n>" can never be another job's id.
    """
    return job_id if attempts == 0 else f"{job_id}-{attempts}"


def _search_job_data(job_id: str, attempts: int, job_timeout: int):
    return Queue.prepare_data(
        defaults.SEARCH_JOB_FUNC,
        (job_id,),
        job_id=rq_job_id(job_id, attempts),
        timeout=job_timeout,
        result_ttl=defaults.RQ_RESULT_TTL,
        failure_ttl=defaults.RQ_FAILURE_TTL,
        description=f"search {job_id}",
    )


def enqueue_search(connection: redis.Redis, job_id: str, *, attempts: int = 0,
                   job_timeout: int = defaults.JOB_TIMEOUT) -> Job:
    """Put a pointer to the search job on the queue."""
    return enqueue_searches(connection, [(job_id, attempts)], job_timeout=job_timeout)[0]


def enqueue_searches(connection: redis.Redis, pointers: list[tuple[str, int]], *,
                     job_timeout: int = defaults.JOB_TIMEOUT) -> list[Job]:
    """Put pointers to many search jobs ((job_id, attempts) each) on the queue in one round trip."""
    if not pointers:
        return []
    datas = [_search_job_data(job_id, attempts, job_timeout) for job_id, attempts in pointers]
    return search_queue(connection).enqueue_many(datas)


def enqueue_notification(connection: redis.Redis, notification_id: int) -> Job:
    """Queue one SMS send. Retries are the outbox's business (next_attempt_at), not RQ's."""
    return notification_queue(connection).enqueue(
        defaults.NOTIFICATION_FUNC,
        notification_id,
        job_id=f"sms-{notification_id}",
        job_timeout=60,
        result_ttl=defaults.RQ_RESULT_TTL,
        failure_ttl=defaults.RQ_FAILURE_TTL,
        description=f"sms {notification_id}",
    )


_WAITING = {s.value.encode() for s in (JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.DEFERRED)}
_QUEUED = JobStatus.QUEUED.value.encode()
# A worker pops a pointer (BLPOP: ours listen on two queues, so RQ keeps no intermediate list) and only
# then marks it started: one that dies, or whose Redis dies, in between leaves a hash that says "queued"
# in no queue. Nothing here enqueues at the front, so a queue is FIFO by enqueue time: a "queued" pointer
# enqueued this long before the one at its queue's head (or this long ago, with the queue empty) is
# suspect, and LPOS then tells whether it is still listed. The margin covers the clocks of several
# enqueuing hosts; LPOS, which scans the list, runs for suspects only.
POPPED_MARGIN = timedelta(seconds=60)


def waiting(connection: redis.Redis, rq_job_ids: list[str]) -> list[bool]:
    """For each RQ id, True if Redis holds a pointer a worker will still pick up (queued, scheduled, deferred).

    A few pipelined round trips for the whole list (the reconciler checks a page of pending jobs at a
    time). "started" does not count: for a job Postgres says is pending, it is the leftover of a worker
    that died; nor does a "queued" pointer no longer in its queue (see POPPED_MARGIN). A duplicate
    pointer costs one refused claim.
    """
    pipe = connection.pipeline(transaction=False)
    for rq_id in rq_job_ids:
        pipe.hmget(Job.key_for(rq_id), "status", "origin", "enqueued_at")
    pointers = pipe.execute()
    found = [status in _WAITING for status, _, _ in pointers]
    now = datetime.now(UTC)
    queued_in = {origin for status, origin, _ in pointers if status == _QUEUED and origin}
    heads = _queue_heads(connection, queued_in, now)
    suspects = [i for i, (status, origin, enqueued_at) in enumerate(pointers)
                if status == _QUEUED and _enqueued_before_head(enqueued_at, heads.get(origin))]
    if suspects:
        pipe = connection.pipeline(transaction=False)
        for i in suspects:
            pipe.lpos(Queue.redis_queue_namespace_prefix + pointers[i][1].decode(), rq_job_ids[i])
        for i, position in zip(suspects, pipe.execute(), strict=True):
            found[i] = position is not None
    return found


def _queue_heads(connection: redis.Redis, origins: set[bytes], now: datetime) -> dict[bytes, datetime | None]:
    """Per queue name: when the pointer at its head was enqueued; `now` for an empty queue (it holds none of
    them); None when the head's time cannot be read."""
    names = sorted(origins)
    if not names:
        return {}
    pipe = connection.pipeline(transaction=False)
    for name in names:
        pipe.lindex(Queue.redis_queue_namespace_prefix + name.decode(), 0)
    heads = dict(zip(names, pipe.execute(), strict=True))
    listed = [(name, head) for name, head in heads.items() if head is not None]
    pipe = connection.pipeline(transaction=False)
    for _, head in listed:
        pipe.hget(Job.key_for(head.decode()), "enqueued_at")
    stamps = dict(zip([name for name, _ in listed], pipe.execute(), strict=True)) if listed else {}
    return {name: _parse_time(stamps[name]) if name in stamps else now for name in names}


def _enqueued_before_head(enqueued_at: bytes | None, head: datetime | None) -> bool:
    enqueued = _parse_time(enqueued_at)
    if enqueued is None or head is None:
        return False  # cannot tell: keep it
    return enqueued < head - POPPED_MARGIN


def _parse_time(stamp: bytes | None) -> datetime | None:
    if not stamp:
        return None
    try:
        return utcparse(stamp.decode())  # RQ's own format, in UTC
    except ValueError:
        return None


def is_waiting(connection: redis.Redis, rq_job_id: str) -> bool:
    return waiting(connection, [rq_job_id])[0]


# -- inspection (the `status` command and the metrics scrape) ------------------

def queue_overview(connection: redis.Redis, names: tuple[str, ...] = defaults.ALL_QUEUES) -> list[dict]:
    """Per queue: jobs waiting, the age of the oldest one, and RQ's started/failed registries."""
    from rq.utils import now

    overview = []
    for name in names:
        queue = Queue(name, connection=connection)
        oldest_age = None
        head = queue.get_job_ids(0, 1)  # RQ pops from the left: the head is the oldest
        if head:
            try:
                job = Job.fetch(head[0], connection=connection)  # not queue.fetch_job: that one deletes strays
            except Exception:  # the hash expired or is unreadable: age unknown
                job = None
            if job is not None and job.enqueued_at is not None:
                oldest_age = max(0.0, (now() - job.enqueued_at).total_seconds())
        overview.append({
            "queue": name,
            "depth": queue.count,
            "oldest_age_s": oldest_age,
            "started": queue.started_job_registry.count,
            "failed": queue.failed_job_registry.count,
        })
    return overview


def worker_overview(connection: redis.Redis) -> list[dict]:
    """RQ's registered workers. A killed worker stays listed until its key expires (RQ's worker TTL)."""
    from rq import Worker
    from rq.utils import now

    workers = []
    for worker in Worker.all(connection=connection):
        beat = worker.last_heartbeat
        workers.append({
            "name": worker.name,
            "host": worker.hostname,
            "pid": worker.pid,
            "state": worker.get_state(),
            "current_job": worker.get_current_job_id(),
            "queues": worker.queue_names(),
            "heartbeat_age_s": (now() - beat).total_seconds() if beat else None,
        })
    return sorted(workers, key=lambda w: w["name"])


def backoff_delay(attempt: int, base: float = defaults.RETRY_BACKOFF_BASE,
                  cap: float = defaults.RETRY_BACKOFF_MAX) -> float:
    """Exponential backoff with full jitter: uniform in [base/2, base * 2**(attempt-1)], capped."""
    ceiling = min(cap, base * (2 ** max(0, attempt - 1)))
    return random.uniform(min(base / 2, ceiling), ceiling)
