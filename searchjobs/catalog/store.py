"""Queries on catalog_items (the products searched); their SQL is in store.sql, beside this module."""

from __future__ import annotations

import time

import sqlalchemy as sa

from searchjobs.db import sql

QUERIES = sql.load(__file__)
_CATEGORIES = QUERIES["categories"]
_COUNT = QUERIES["count"]
_CATALOG_VERSION = QUERIES["catalog_version"]
_IMAGE = QUERIES["image"]
_UPSERT = QUERIES["upsert"]
_NEAREST = QUERIES["nearest"]


def categories(conn: sa.Connection) -> list[dict]:
    rows = conn.execute(_CATEGORIES).mappings()
    return [dict(r) for r in rows]


def category_names(conn: sa.Connection) -> set[str]:
    return {r["category"] for r in categories(conn)}


def count(conn: sa.Connection) -> int:
    return conn.execute(_COUNT).scalar_one()


def catalog_version(conn: sa.Connection) -> str:
    """Changes whenever the catalog does: item count, last update and descriptor version."""
    row = conn.execute(_CATALOG_VERSION).one()
    return f"{row[2]}:{row[0]}:{int(row[1].timestamp())}"


def image(conn: sa.Connection, sku: str) -> dict | None:
    row = conn.execute(_IMAGE, {"sku": sku}).mappings().first()
    return dict(row) if row else None


def upsert(conn: sa.Connection, items: list[dict]) -> None:
    """Insert or update items by sku, in one statement: each dict has every column of the `upsert` query
    (`attributes` as JSON text, `embedding` as a vector literal "[x,y,...]"). Of items with one sku the
    last wins, as it would one by one."""
    by_sku = {item["sku"]: item for item in items}
    if not by_sku:
        return
    columns = next(iter(by_sku.values())).keys()
    conn.execute(_UPSERT, {column: [item[column] for item in by_sku.values()] for column in columns})


def nearest(conn: sa.Connection, category: str, vector: str, k: int, ef_search: int) -> list[sa.Row]:
    """The `k` items of `category` nearest to `vector` (a vector literal), best first: rows of
    (sku, name, price, currency, image_url, has_image, distance)."""
    params = {"category": category, "vector": vector, "k": k, "ef_search": ef_search}
    return list(conn.execute(_NEAREST, params).all())


class CatalogFacts:
    """The catalog's category names and version, re-read at most every `ttl` seconds.

    Both scan the whole catalog (22 ms and 99 ms at 100k items), yet change only when
    an import runs; a process keeps one of these and shares it between submits and jobs.
    """

    def __init__(self, engine: sa.Engine, ttl: float):
        self.engine = engine
        self.ttl = ttl
        self._read: dict[str, tuple[float, object]] = {}  # what -> (monotonic time read, value)

    def _recent(self, what: str, query):
        now = time.monotonic()
        cached = self._read.get(what)
        if cached is None or now - cached[0] > self.ttl:
            with self.engine.connect() as conn:
                cached = (now, query(conn))
            self._read[what] = cached
        return cached[1]

    def category_names(self) -> set[str]:
        return self._recent("categories", category_names)

    def version(self) -> str:
        return self._recent("version", catalog_version)
