"""While a load fills an empty catalog, every process can tell, with its progress.

The loader holds a Postgres advisory lock for the whole load (loading.sql says how); readers look
for it in pg_locks. Nothing is written, so nothing is left behind by a loader that dies.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import sqlalchemy as sa

from searchjobs.db import sql

QUERIES = sql.load(__file__)
_ANNOUNCE = QUERIES["announce"]
_PROGRESS = QUERIES["progress"]

# First key of the advisory lock: ours alone among the advisory locks of this database.
LOCK_NAMESPACE = 0x43415447  # "CATG"


@dataclass(frozen=True)
class LoadProgress:
    loaded: int  # items in the catalog so far
    total: int  # items the load puts in

    @property
    def percent(self) -> int:
        return min(100, round(100 * self.loaded / self.total)) if self.total else 100


@contextlib.contextmanager
def announced(engine: sa.Engine, total: int) -> Iterator[None]:
    """Within the block, `progress()` tells every process that a load of `total` items runs."""
    with engine.connect() as conn, conn.begin():
        conn.execute(_ANNOUNCE, {"namespace": LOCK_NAMESPACE, "total": total})
        yield


def progress(conn: sa.Connection) -> LoadProgress | None:
    """The catalog's load now running, or None."""
    row = conn.execute(_PROGRESS, {"namespace": LOCK_NAMESPACE}).one()
    return None if row.total is None else LoadProgress(loaded=row.loaded, total=row.total)
