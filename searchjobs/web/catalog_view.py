"""What the submit page and the API say of the catalog: its categories, or its first load's progress.

Both are kept per web process, so `/`, `GET /api/categories` and a submit's checks send Postgres nothing
most of the time:

- the categories and their item counts come from the process's `CatalogFacts`: at most
  `CatalogFacts.ttl` seconds old (defaults.CATALOG_FACTS_TTL, 30 s), as the submit's category check
  already was;
- whether the first load runs (catalog/loading.py) is asked on every request until this process has seen
  the catalog hold items with no load running ("settled"); it is then asked again once per ttl, with
  the categories read fresh at that moment. A first load only ever fills an empty catalog, and an empty
  catalog never settles, so a process that has not yet seen items shows the loading page and answers 503
  `catalog_loading` throughout; when the load ends, the very next request sees the whole catalog. One
  exception: a catalog emptied by hand (TRUNCATE) and loaded again under a settled process; for the rest
  of its ttl that process still lists the old categories and accepts submits, which search the part
  loaded so far (seen with `catalog demo` after a TRUNCATE: 202s for 8 s of a 27 s load).
"""

from __future__ import annotations

import threading
import time

from flask import current_app

from searchjobs.catalog import loading
from searchjobs.catalog import store as catalog
from searchjobs.db.engine import translate_errors
from searchjobs.errors import DependencyUnavailable
from searchjobs.web.runtime import runtime

EXTENSION = "searchjobs.catalog_view"  # app.extensions key of this app's CatalogView


class CatalogView:
    def __init__(self, facts: catalog.CatalogFacts, engine):
        self.facts = facts
        self.engine = engine
        self._settled_until = 0.0  # monotonic time until which no load is asked about
        self._lock = threading.Lock()

    def loading(self) -> loading.LoadProgress | None:
        """The catalog's first load while it runs, else None."""
        if time.monotonic() < self._settled_until:
            return None
        # One request of the process asks; the others wait for its answer, as long as they would wait for a
        # pooled connection: a question stuck on a Postgres cut off (10 s a try, 15 s a statement) must not
        # queue every thread behind it one timeout after another, cache-served reads included
        if not self._lock.acquire(timeout=self.engine.pool.timeout()):
            raise DependencyUnavailable("the database is slow to answer")
        try:
            if time.monotonic() < self._settled_until:
                return None
            with self.engine.connect() as conn:
                load = loading.progress(conn)
            if load is None and self.facts.categories(fresh=True):
                self._settled_until = time.monotonic() + self.facts.ttl
            return load
        finally:
            self._lock.release()

    def categories(self) -> list[dict]:
        """[{category, items}], at most `facts.ttl` seconds old (call `loading()` first)."""
        return self.facts.categories()


def catalog_view() -> CatalogView:
    view = current_app.extensions.get(EXTENSION)
    if view is None:
        rt = runtime()
        view = current_app.extensions.setdefault(EXTENSION, CatalogView(rt.catalog_facts, rt.db))
    return view


@translate_errors
def catalog_loading() -> loading.LoadProgress | None:
    """The catalog's first load, while it runs (the page and the API then say so)."""
    return catalog_view().loading()


@translate_errors
def catalog_categories() -> list[dict]:
    return catalog_view().categories()
