"""Search backends: one small interface, so another engine can be plugged in by a setting.

`SEARCHJOBS_SEARCH_BACKEND` is "pgvector" (the default) or a dotted path
"package.module:factory"; the factory takes the Runtime and returns an object
with the SearchBackend methods (for example a client of an external
visual-search API).
"""

from __future__ import annotations

import importlib
from typing import Protocol

import numpy as np
import sqlalchemy as sa

from searchjobs import defaults
from searchjobs.catalog import store as catalog
from searchjobs.errors import ConfigError

EF_SEARCH = 100  # HNSW candidate list per query: recall vs. speed, measured in bench/search_speed.py


class SearchBackend(Protocol):
    name: str

    def search(self, category: str, vector: np.ndarray, k: int, embedder: str | None = None) -> list[dict]:
        """Top `k` items of `category` most like `vector`, best first; `embedder` names the embedder that
        made `vector` (None: the catalog's active one), and only its vectors may be compared with it.

        Each hit: {"sku", "name", "price" (str), "currency", "score" (0-1), "image_url"}.
        """

    def catalog_version(self) -> str:
        """An identifier that changes when the searched catalog does."""


def vector_literal(vector: np.ndarray) -> str:
    return "[" + ",".join(f"{x:.6g}" for x in np.asarray(vector, dtype=np.float32)) + "]"


class PgVectorBackend:
    """Cosine nearest neighbours through the HNSW index of one embedder's vectors (catalog_embeddings)."""

    name = "pgvector"

    def __init__(self, engine: sa.Engine, public_base_url: str, facts: catalog.CatalogFacts | None = None):
        self.engine = engine
        self.public_base_url = public_base_url.rstrip("/")
        self.facts = facts or catalog.CatalogFacts(engine, defaults.CATALOG_FACTS_TTL)
        self.last_embedder: str | None = None  # of the last search: the catalog version names it

    def search(self, category: str, vector: np.ndarray, k: int, embedder: str | None = None) -> list[dict]:
        with self.engine.connect() as conn:
            rows = catalog.nearest(conn, category, vector_literal(vector), k, ef_search=max(EF_SEARCH, k),
                                   embedder=embedder)
        self.last_embedder = embedder
        return [self._hit(*row) for row in rows]

    def _hit(self, sku, name, price, currency, image_url, has_image, distance) -> dict:
        if has_image:
            image_url = f"{self.public_base_url}/catalog/images/{sku}"
        return {
            "sku": sku,
            "name": name,
            "price": f"{price:.2f}",
            "currency": currency,
            "score": round(max(0.0, min(1.0, 1.0 - float(distance))), 4),
            "image_url": image_url,
        }

    def catalog_version(self) -> str:
        return self.facts.version(self.last_embedder)


def load_backend(setting: str, runtime) -> SearchBackend:
    if setting == "pgvector":
        return PgVectorBackend(runtime.db, runtime.settings.public_base_url, runtime.catalog_facts)
    module_name, _, attr = setting.partition(":")
    if not attr:
        raise ConfigError(f"SEARCHJOBS_SEARCH_BACKEND must be 'pgvector' or 'module:factory', got {setting!r}")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot load search backend {setting!r}: {exc}") from exc
    return factory(runtime)
