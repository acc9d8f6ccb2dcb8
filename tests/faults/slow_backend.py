"""A test-only search backend: the real pgvector search, made slow on purpose.

`SEARCHJOBS_SEARCH_BACKEND=tests.faults.slow_backend:factory` makes every
category search sleep first, so fault tests can catch a job mid-run (between
two persisted steps) and the timeout test can overrun:
- SLOW_SEARCH_SECONDS: the sleep of every category (default below);
- SLOW_SEARCH_OVERRIDES: "coat=1.2,bag=1.2", per-category sleeps for long jobs.
"""

from __future__ import annotations

import os
import time

from searchjobs.catalog.backends import PgVectorBackend

DEFAULT_SLOW_SEARCH_SECONDS = 0.3  # seconds a category search sleeps unless told otherwise


class SlowBackend:
    name = "slow-pgvector"

    def __init__(self, inner, seconds: float, overrides: dict[str, float] | None = None):
        self.inner = inner
        self.seconds = seconds
        self.overrides = overrides or {}

    def search(self, category, vector, k, embedder=None):
        time.sleep(self.overrides.get(category, self.seconds))
        return self.inner.search(category, vector, k, embedder)

    def catalog_version(self) -> str:
        return self.inner.catalog_version()


def parse_overrides(raw: str) -> dict[str, float]:
    pairs = (item.split("=", 1) for item in raw.split(",") if item.strip())
    return {name.strip(): float(value) for name, value in pairs}


def factory(runtime) -> SlowBackend:
    seconds = float(os.environ.get("SLOW_SEARCH_SECONDS") or DEFAULT_SLOW_SEARCH_SECONDS)
    overrides = parse_overrides(os.environ.get("SLOW_SEARCH_OVERRIDES", ""))
    return SlowBackend(PgVectorBackend(runtime.db, runtime.settings.public_base_url), seconds, overrides)
