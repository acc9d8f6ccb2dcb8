"""Queries on the catalog: its items, their vectors (one per embedder) and the active embedder.

The SQL is in store.sql, beside this module.
"""

from __future__ import annotations

import datetime
import time
from dataclasses import dataclass

import sqlalchemy as sa

from searchjobs.db import sql

QUERIES = sql.load(__file__)
_CATEGORIES = QUERIES["categories"]
_COUNT = QUERIES["count"]
_CATALOG_VERSION = QUERIES["catalog_version"]
_IMAGE = QUERIES["image"]
_UPSERT = QUERIES["upsert"]
_UPSERT_EMBEDDING = QUERIES["upsert_embedding"]
_ACTIVE_EMBEDDER = QUERIES["active_embedder"]
_LOCK_ACTIVE_EMBEDDER = QUERIES["lock_active_embedder"]
_REGISTER_EMBEDDER = QUERIES["register_embedder"]
_EMBEDDER_INDEX = QUERIES["embedder_index"]
_EMBEDDING_PROGRESS = QUERIES["embedding_progress"]
_MISSING_EMBEDDINGS = QUERIES["missing_embeddings"]
_ADD_EMBEDDING = QUERIES["add_embedding"]
_SWITCH_EMBEDDER = QUERIES["switch_embedder"]
_NEAREST = QUERIES["nearest"]


@dataclass(frozen=True)
class ActiveEmbedder:
    """What catalog_state says searches use: the embedder's name, dimension and how to load it."""

    name: str
    dimension: int
    spec: str
    switched_at: datetime.datetime


def categories(conn: sa.Connection) -> list[dict]:
    rows = conn.execute(_CATEGORIES).mappings()
    return [dict(r) for r in rows]


def category_names(conn: sa.Connection) -> set[str]:
    return {r["category"] for r in categories(conn)}


def count(conn: sa.Connection) -> int:
    return conn.execute(_COUNT).scalar_one()


def catalog_version(conn: sa.Connection) -> str:
    """"<active embedder>:<items>:<epoch seconds of the last update or switch>"."""
    embedder, items, changed = conn.execute(_CATALOG_VERSION).one()
    return f"{embedder}:{items}:{int(changed.timestamp())}"


def image(conn: sa.Connection, sku: str) -> dict | None:
    row = conn.execute(_IMAGE, {"sku": sku}).mappings().first()
    return dict(row) if row else None


def upsert(conn: sa.Connection, items: list[dict]) -> None:
    """Insert or update items by sku, in one statement: each dict has every column of the `upsert` query
    (`attributes` as JSON text). Of items with one sku the last wins, as it would one by one."""
    by_sku = {item["sku"]: item for item in items}
    if not by_sku:
        return
    columns = next(iter(by_sku.values())).keys()
    conn.execute(_UPSERT, {column: [item[column] for item in by_sku.values()] for column in columns})


def upsert_embeddings(conn: sa.Connection, embedder: str, vectors: list[dict]) -> None:
    """The vectors of items just upserted ({"sku", "embedding": a vector literal}), from `embedder`;
    their vectors from other embedders are deleted."""
    conn.execute(_UPSERT_EMBEDDING, [{"embedder": embedder, **v} for v in vectors])


def active_embedder(conn: sa.Connection) -> ActiveEmbedder:
    return ActiveEmbedder(**conn.execute(_ACTIVE_EMBEDDER).mappings().one())


def lock_active_embedder(conn: sa.Connection) -> str:
    """The active embedder's name, share-locked until the transaction ends (a switch waits for it)."""
    return conn.execute(_LOCK_ACTIVE_EMBEDDER).scalar_one()


def register_embedder(conn: sa.Connection, name: str, dimension: int, spec: str) -> int:
    """Record an embedder (idempotent): the dimension recorded for its name, the first one given."""
    return conn.execute(_REGISTER_EMBEDDER, {"name": name, "dimension": dimension, "spec": spec}).scalar_one()


def embedder_index(conn: sa.Connection, name: str) -> str:
    """Make the embedder's partial HNSW index if it is missing; its name."""
    return conn.execute(_EMBEDDER_INDEX, {"name": name}).scalar_one()


def embedding_progress(conn: sa.Connection, embedder: str) -> tuple[int, int]:
    """(items in the catalog, items with a vector from `embedder`)."""
    row = conn.execute(_EMBEDDING_PROGRESS, {"embedder": embedder}).one()
    return row.items, row.embedded


def missing_embeddings(conn: sa.Connection, embedder: str, after: int, limit: int) -> list[dict]:
    """Up to `limit` items with an id above `after` and no vector from `embedder`, by id."""
    params = {"embedder": embedder, "after": after, "limit": limit}
    return [dict(r) for r in conn.execute(_MISSING_EMBEDDINGS, params).mappings()]


def add_embeddings(conn: sa.Connection, embedder: str, vectors: list[dict]) -> None:
    """Reembedded vectors ({"item_id", "updated_at" as read, "embedding"}); an item changed since is skipped."""
    conn.execute(_ADD_EMBEDDING, [{"embedder": embedder, **v} for v in vectors])


def switch_embedder(conn: sa.Connection, embedder: str) -> bool:
    """Make `embedder` active if every item has a vector from it; False if not (or if it already is)."""
    return conn.execute(_SWITCH_EMBEDDER, {"embedder": embedder}).first() is not None


def nearest(conn: sa.Connection, category: str, vector: str, k: int, ef_search: int,
            embedder: str | None = None) -> list[sa.Row]:
    """The `k` items of `category` nearest to `vector` (a vector literal) among the vectors of `embedder`
    (None: the active one), best first: rows of (sku, name, price, currency, image_url, has_image, distance)."""
    params = {"embedder": embedder, "category": category, "vector": vector, "k": k, "ef_search": ef_search}
    return list(conn.execute(_NEAREST, params).all())


class CatalogFacts:
    """The catalog's categories (with their item counts) and version, re-read at most every `ttl` seconds.

    Both scan the whole catalog (22 ms and 99 ms at 100k items), yet change only when
    an import runs; a process keeps one of these and shares it between submits and jobs.
    """

    def __init__(self, engine: sa.Engine, ttl: float):
        self.engine = engine
        self.ttl = ttl
        self._read: dict[str, tuple[float, object]] = {}  # what -> (monotonic time read, value)

    def _recent(self, what: str, query, fresh: bool = False):
        now = time.monotonic()
        cached = self._read.get(what)
        if fresh or cached is None or now - cached[0] > self.ttl:
            with self.engine.connect() as conn:
                cached = (now, query(conn))
            self._read[what] = cached
        return cached[1]

    def categories(self, *, fresh: bool = False) -> list[dict]:
        """The categories with their item counts (`fresh`: read now). What the submit page and
        GET /api/categories show."""
        return self._recent("category_counts", categories, fresh=fresh)

    def category_names(self) -> set[str]:
        # the names of the very read the pages list (categories), not a read of their own at another
        # moment: a category just imported is then offered and accepted together, never offered then refused
        return {row["category"] for row in self.categories()}

    def version(self, embedder: str | None = None) -> str:
        """The catalog version; re-read at once when it names another embedder than `embedder` (the one
        a search just used), so results show a switch without waiting for the TTL."""
        version = self._recent("version", catalog_version)
        if embedder is not None and not version.startswith(f"{embedder}:"):
            version = self._recent("version", catalog_version, fresh=True)
        return version

