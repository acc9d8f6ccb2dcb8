"""Closing a Runtime (tests, and anything that builds one for a while) on real Postgres and Redis: the
views a worker queued behind it are sent before the Redis pool closes, and the writer thread ends."""

from __future__ import annotations

import logging

from searchjobs.jobs.cache import cache_key
from searchjobs.runtime import Runtime
from tests.unit.test_cache import make_row

VIEWS = 3000  # enough that the writer is still sending when close() comes


def test_close_sends_the_queued_views_then_stops_the_writer(settings, runtime, caplog):
    closing = Runtime.from_settings(settings)
    caplog.set_level(logging.WARNING, logger="searchjobs.jobs.cache")
    for n in range(VIEWS):
        closing.cache.write_behind(make_row(job_id=f"job-{n:05d}", version=1))
    writer = closing.cache._behind
    closing.close()

    writer.join(2)
    assert not writer.is_alive()
    assert not [r for r in caplog.records if "write-behind" in r.getMessage() or "skipped" in r.getMessage()], \
        [r.getMessage() for r in caplog.records]
    assert runtime.redis.exists(*(cache_key(f"job-{n:05d}") for n in range(VIEWS))) == VIEWS
