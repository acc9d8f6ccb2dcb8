"""Engines and connections. Knows nothing of Flask or RQ.

Two ways in:
- `engine.begin()` for multi-statement transactions (submit, complete);
- an autocommit connection for single statements (progress steps): psycopg2
  then sends one statement and no BEGIN/COMMIT, one round trip per step.
"""

from __future__ import annotations

import functools
import os
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from searchjobs import defaults
from searchjobs.db import deadlines, sql
from searchjobs.errors import ConfigError, DependencyUnavailable

CONNECT_TIMEOUT = 3  # seconds; an unreachable Postgres must fail fast, not hang a request
# No statement of ours should run longer; a stuck one is cancelled. Set on the role, in the database, by
# `searchjobs db upgrade` (session_defaults below), not sent at connection start: PgBouncer in transaction
# pooling refuses startup options it does not know, and a SET would stay on a shared server connection.
STATEMENT_TIMEOUT_MS = 15000
# A peer that vanished without a FIN or RST (a cut link, a host powered off) is noticed in seconds, not
# after the kernel's ~15 minutes of retransmissions: keepalive probes on an idle connection (after 5 s
# idle, every 2 s, 3 lost ones: ~11 s), and for data sent but not acknowledged, libpq's tcp_user_timeout.
KEEPALIVE_IDLE, KEEPALIVE_INTERVAL, KEEPALIVE_COUNT = 5, 2, 3  # seconds, seconds, probes
TCP_USER_TIMEOUT_MS = 10000  # unacknowledged data this long: the connection is dead
# A Postgres that answers nothing though its sockets stay open (frozen, stuck on its storage) defeats all of the
# above; the web's engines also give up on an answer after this long (db/deadlines.py): the server's own
# statement_timeout, plus a margin, so a slow statement Postgres still answers is never cut by us first
STATEMENT_DEADLINE = STATEMENT_TIMEOUT_MS / 1000 + 2  # seconds


def normalise_url(url: str) -> str:
    """Accept postgres:// and postgresql:// URLs (as Heroku and others give them), with one host or several.

    libpq's multi-host form `postgresql://u:p@h1:5432,h2:5432/db?target_session_attrs=read-write` is
    rewritten to the query form SQLAlchemy parses (`...@/db?host=h1:5432&host=h2:5432&...`); psycopg2
    then hands libpq `host=h1,h2 port=5432,5432`, and libpq tries them in order (its own failover).
    """
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg2://" + url[len("postgresql://") :]
    return _hosts_to_query(url)


def _hosts_to_query(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    netloc, slash, tail = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    if not sep or "," not in hosts:
        return url
    path, _, query = tail.partition("?")
    if "[" in hosts:  # SQLAlchemy splits each host:port at its last colon
        raise ConfigError("DATABASE_URL: IPv6 addresses in a several-host URL are not supported; use host names")
    params = [f"host={host}" for host in hosts.split(",") if host]
    if query:
        params.append(query)
    return f"{scheme}://{userinfo}{at}/{path}?{'&'.join(params)}"


def make_engine(url: str, *, pool_size: int = 5, max_overflow: int = 5, echo: bool = False,
                autocommit: bool = False, pool_timeout: float = defaults.DB_POOL_TIMEOUT,
                pre_ping: bool = False, statement_deadline: float | None = None) -> sa.Engine:
    """`statement_deadline`: seconds after which a wait for Postgres's answer is given up, the connection
    closed and an OperationalError raised (db/deadlines.py; the web passes STATEMENT_DEADLINE)."""
    deadline_args = {} if statement_deadline is None else {
        "connection_factory": deadlines.connection_factory(statement_deadline)}
    engine = sa.create_engine(
        normalise_url(url),
        pool_size=pool_size,
        max_overflow=max_overflow,
        # more concurrent requests than connections: wait briefly, then answer 503, not a 500 after 30 s
        pool_timeout=pool_timeout,
        # workers: no ping per checkout (it would double a progress step's round trips). After a Postgres
        # restart the first statement on an old connection fails as a disconnect, SQLAlchemy recycles
        # every older connection of the pool, and the worker retries it (lifecycle._with_db_retry).
        # The web pings (pre_ping): otherwise each web process answers its first request after the
        # restart 503, though Postgres is back (tests/faults saw one)
        pool_pre_ping=pre_ping,
        pool_recycle=1800,
        echo=echo,
        # an autocommit engine's connections stay in autocommit for life: no BEGIN/COMMIT around a
        # statement, and no isolation-level reset on every return to the pool
        **({"isolation_level": "AUTOCOMMIT"} if autocommit else {}),
        connect_args={
            "connect_timeout": CONNECT_TIMEOUT,
            "application_name": f"searchjobs[{os.getpid()}]",
            "keepalives": 1,
            "keepalives_idle": KEEPALIVE_IDLE,
            "keepalives_interval": KEEPALIVE_INTERVAL,
            "keepalives_count": KEEPALIVE_COUNT,
            "tcp_user_timeout": TCP_USER_TIMEOUT_MS,
            **deadline_args,
        },
    )
    if statement_deadline is not None and pre_ping:
        deadlines.bound_pings(engine)
    return engine


QUERIES = sql.load(__file__)  # engine.sql: a probe, the clock, the session defaults
_PING = QUERIES["ping"]
_NOW = QUERIES["now"]
_SESSION_DEFAULTS = QUERIES["session_defaults"]


def ping(conn: sa.Connection) -> None:
    """One round trip to Postgres (raises what the driver raises when it is out of reach)."""
    conn.execute(_PING)


def database_now(conn: sa.Connection) -> datetime:
    """Postgres's clock, which every deadline is on."""
    return conn.execute(_NOW).scalar_one()


def session_defaults(conn: sa.Connection) -> None:
    """Store our session settings on the connecting role in this database (run by `db upgrade`).

    They apply to sessions opened afterwards; pools pick them up as their connections are renewed.
    """
    conn.execute(_SESSION_DEFAULTS, {"statement_timeout": f"{int(STATEMENT_TIMEOUT_MS)}ms"})


def autocommit(engine: sa.Engine, *, pre_ping: bool = False, statement_deadline: float | None = None) -> sa.Engine:
    """An engine on the same database whose statements each commit on their own (one round trip).

    `pre_ping` as for `make_engine`: the web's status reads and feeds go through this engine, so the
    web passes it here too, or each web process answers its first read after a Postgres restart 503;
    `statement_deadline` as well, for the same reads.

    Its own pool, not `engine.execution_options(isolation_level=...)`: that variant switches the
    isolation level at every checkout and sends `SET default_transaction_isolation` at every return,
    which doubled the round trips of a job (bench/throughput.py, pg_stat_statements).
    """
    return make_engine(engine.url.render_as_string(hide_password=False), pool_size=engine.pool.size(),
                       echo=engine.echo, autocommit=True, pool_timeout=engine.pool.timeout(), pre_ping=pre_ping,
                       statement_deadline=statement_deadline)


# What a database call can raise when Postgres is out of reach: the driver's errors (wrapped) and
# the pool's own TimeoutError (every connection busy). `is_outage` tells an outage from a bug.
DB_ERRORS = (sa_exc.DBAPIError, sa_exc.TimeoutError)


def is_disconnect(exc: BaseException) -> bool:
    # OperationalError covers a refused or dropped connection, a terminated backend and a statement timeout
    return isinstance(exc, (sa_exc.OperationalError, sa_exc.InterfaceError)) or (
        isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated
    )


def is_outage(exc: BaseException) -> bool:
    """Postgres is unreachable, too slow, or every pooled connection is busy: retry later, never a 500."""
    return isinstance(exc, sa_exc.TimeoutError) or is_disconnect(exc)


def translate_errors(func):
    """Turn "Postgres is unavailable" into DependencyUnavailable where the database is entered."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except DB_ERRORS as exc:
            if is_outage(exc):
                raise DependencyUnavailable("the database is unavailable") from exc
            raise

    return wrapper
