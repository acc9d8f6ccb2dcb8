"""The resources one process uses to run jobs, built once per process.

The worker entry point (and the web app factory) build a Runtime and install
it; job functions, which RQ calls with a job id only, find it here. Tests
install their own.
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
from dataclasses import dataclass, field
from functools import cached_property

import redis
import sqlalchemy as sa

from searchjobs import defaults
from searchjobs.catalog import store as catalog
from searchjobs.config import Settings
from searchjobs.db import engine as db
from searchjobs.jobs.cache import JobCache
from searchjobs.queue import check_sentinel_service, connect


@dataclass
class Runtime:
    settings: Settings
    engine: sa.Engine  # transactions
    redis: redis.Redis  # short timeouts: cache, enqueue, publish
    worker_name: str = field(default_factory=lambda: f"{socket.gethostname()}.{os.getpid()}.{secrets.token_hex(2)}")
    # set when a graceful shutdown's grace period is over: the running job goes back to the queue
    release_requested: threading.Event = field(default_factory=threading.Event)
    # the attempt this process is running, for the lease heartbeat (one at a time: no fork, no threads)
    current_attempt: object | None = None
    pre_ping: bool = False  # check each pooled connection at checkout, on both engines (the web does)
    statement_deadline: float | None = None  # seconds a wait for Postgres may last, on both engines (the web's)

    @classmethod
    def from_settings(cls, settings: Settings, *, pre_ping: bool = False, statement_deadline: float | None = None,
                      **kwargs) -> Runtime:
        """pre_ping, statement_deadline: see db.engine.make_engine (the web sets both)."""
        database_url, redis_url = settings.require_urls()
        check_sentinel_service(redis_url)  # a misspelt service name is a configuration error, not an outage
        engine = db.make_engine(database_url, pool_size=settings.db_pool_size, pool_timeout=settings.db_pool_timeout,
                                pre_ping=pre_ping, statement_deadline=statement_deadline)
        return cls(settings=settings, engine=engine, redis=connect(redis_url), pre_ping=pre_ping,
                   statement_deadline=statement_deadline, **kwargs)

    @cached_property
    def db(self) -> sa.Engine:
        """Autocommit view of the same pool: single statements, one round trip each."""
        return db.autocommit(self.engine, pre_ping=self.pre_ping, statement_deadline=self.statement_deadline)

    @cached_property
    def cache(self) -> JobCache:
        return JobCache(self.redis, ttl=self.settings.cache_ttl, live_ttl=self.settings.lease_seconds)

    @cached_property
    def search_backend(self):
        from searchjobs.catalog.backends import load_backend

        return load_backend(self.settings.search_backend, self)

    @cached_property
    def embedders(self):
        """The configured embedder, loaded (and checked) once; jobs use the catalog's active one."""
        from searchjobs.catalog.embedders import Embedders, load_embedder

        return Embedders(load_embedder(self.settings.embedder))

    @cached_property
    def sender(self):
        from searchjobs.notifications.senders import sender_from_settings

        return sender_from_settings(self.settings)

    @cached_property
    def catalog_facts(self) -> catalog.CatalogFacts:
        """Category names (checked at submit) and the catalog version (in results), shared per process."""
        return catalog.CatalogFacts(self.db, defaults.CATALOG_FACTS_TTL)

    def close(self) -> None:
        if "cache" in self.__dict__:
            self.cache.close()  # its writer thread sends what it holds on the Redis pool closed below
        self.engine.dispose()
        if "db" in self.__dict__:
            self.db.dispose()
        self.redis.close()


_runtime: Runtime | None = None
_lock = threading.Lock()


def install(runtime: Runtime | None) -> None:
    global _runtime
    _runtime = runtime


def get_runtime() -> Runtime:
    """The installed runtime, or one built from the environment on first use."""
    global _runtime
    if _runtime is None:
        with _lock:
            if _runtime is None:
                _runtime = Runtime.from_settings(Settings.for_process())
    return _runtime
