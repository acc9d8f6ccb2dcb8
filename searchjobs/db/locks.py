"""Named locks held as lease rows (`scheduler_locks`): one reconciler pass, one cleanup at a time.

Each statement stands alone (autocommit, no session state), so the lock works through
PgBouncer in transaction pooling, and no transaction stays open while the holder talks
to Redis. A holder that dies keeps the lock only until its lease runs out.
"""

from __future__ import annotations

import sqlalchemy as sa

from searchjobs.db import sql
from searchjobs.db.engine import DB_ERRORS, is_outage

QUERIES = sql.load(__file__)  # locks.sql
_ACQUIRE = QUERIES["acquire"]
_RELEASE = QUERIES["release"]


def acquire(conn: sa.Connection, name: str, holder: str, seconds: float) -> bool:
    """Take (or extend) the lock for `seconds`; False if another holder's lease is still running."""
    return conn.execute(_ACQUIRE, {"name": name, "holder": holder, "seconds": float(seconds)}).first() is not None


def release(conn: sa.Connection, name: str, holder: str) -> None:
    conn.execute(_RELEASE, {"name": name, "holder": holder})


def take(engine: sa.Engine, name: str, holder: str, seconds: float) -> bool:
    """acquire on a connection of its own (an autocommit engine: one statement)."""
    with engine.connect() as conn:
        return acquire(conn, name, holder, seconds)


def give_back(engine: sa.Engine, name: str, holder: str) -> None:
    """Release the lock; if Postgres is unreachable the lease simply runs out."""
    try:
        with engine.connect() as conn:
            release(conn, name, holder)
    except DB_ERRORS as exc:
        if not is_outage(exc):
            raise
