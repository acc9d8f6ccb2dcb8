"""Named locks held as lease rows (`scheduler_locks`): one reconciler pass, one cleanup at a time.

Each statement stands alone (autocommit, no session state), so the lock works through
PgBouncer in transaction pooling, and no transaction stays open while the holder talks
to Redis. A holder that dies keeps the lock only until its lease runs out; one whose work
may outlast the lease renews it as it goes (`HeldLock.keep`).
"""

from __future__ import annotations

import time

import sqlalchemy as sa

from searchjobs.db import sql
from searchjobs.db.engine import DB_ERRORS, is_outage
from searchjobs.errors import SearchJobsError

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


class LockLost(SearchJobsError):
    """Another holder took the lock: this one outlived its lease without renewing it (frozen, cut off)."""

    code = "lock_lost"


class HeldLock:
    """A lock row held for work that may outlast its lease: `keep()` between the work's steps renews it
    once a third of the lease has gone by, and raises LockLost if another holder has it by then."""

    def __init__(self, engine: sa.Engine, name: str, holder: str, seconds: float):
        self.engine, self.name, self.holder, self.seconds = engine, name, holder, seconds
        self._renewed = 0.0  # monotonic time at which the last successful take was sent

    def take(self) -> bool:
        sent = time.monotonic()  # before the statement: the lease runs from no earlier than this
        if not take(self.engine, self.name, self.holder, self.seconds):
            return False
        self._renewed = sent
        return True

    def keep(self) -> None:
        """Renew the lease if a third of it has gone by (a frozen holder finds it lost here)."""
        if time.monotonic() - self._renewed < self.seconds / 3:
            return
        if not self.take():
            raise LockLost(f"the {self.name} lock was taken over by another holder")

    def give_back(self) -> None:
        give_back(self.engine, self.name, self.holder)
