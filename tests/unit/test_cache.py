"""The cache logic on fakeredis (with Lua): versioned writes, TTL, wake-ups, degrading to a miss."""

from __future__ import annotations

import contextlib
import json
import time
from datetime import UTC, datetime

import fakeredis
import pytest
import sqlalchemy as sa

from searchjobs.embedded import free_port
from searchjobs.errors import DependencyUnavailable
from searchjobs.jobs import store as job_queries
from searchjobs.jobs.cache import (
    TOMBSTONE_VERSION,
    Gone,
    JobCache,
    cache_key,
    events_channel,
    job_view,
    read_through,
)
from searchjobs.queue import connect

PHONE = "+33612345678"


def make_row(version: int = 1, **changes) -> dict:
    now = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    row = {
        "id": 1, "job_id": "job-abc", "status": "processing", "progress": 30, "stage": "features",
        "version": version, "attempts": 1, "phone_number": PHONE, "country_code": "33",
        "categories": ["dress"], "original_image_url": "http://testserver/images/x", "image_id": 1,
        "results": None, "meta": {}, "error": None, "error_code": None, "client_id": None,
        "worker_name": "w1", "lease_expires_at": now, "run_after": None, "cancel_requested": False,
        "created_at": now, "updated_at": now, "started_at": now, "finished_at": None,
    }
    row.update(changes)
    return row


@pytest.fixture
def fake():
    return fakeredis.FakeRedis(server=fakeredis.FakeServer())


@pytest.fixture
def cache(fake):
    return JobCache(fake, ttl=120)


def test_a_newer_version_replaces_an_older_one(cache):
    assert cache.write_row(make_row(version=1, progress=5)) is True
    assert cache.write_row(make_row(version=2, progress=15)) is True
    assert cache.read("job-abc")["progress"] == 15


def test_an_older_or_equal_version_never_replaces_a_newer_one(cache):
    assert cache.write_row(make_row(version=5, progress=90)) is True
    assert cache.write_row(make_row(version=4, progress=30)) is False  # a slow writer
    assert cache.write_row(make_row(version=5, progress=10)) is False  # a replay of the same version
    view = cache.read("job-abc")
    assert view["version"] == 5 and view["progress"] == 90


def test_write_sets_the_ttl(cache, fake):
    cache.write_row(make_row())
    assert 0 < fake.ttl(cache_key("job-abc")) <= 120


def test_write_publishes_the_version_and_a_stale_write_does_not(cache, fake):
    pubsub = fake.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(events_channel("job-abc"))
    cache.write_row(make_row(version=3))
    cache.write_row(make_row(version=2))
    messages = []
    deadline = time.monotonic() + 0.3
    while time.monotonic() < deadline:
        message = pubsub.get_message(timeout=0.05)
        if message is not None:
            messages.append(message["data"])
    assert messages == [b"3"]
    pubsub.close()


def test_the_view_never_holds_the_phone_number(cache, fake):
    row = make_row()
    view = job_view(row)
    assert view["sms"] is True
    assert "phone_number" not in view and "country_code" not in view
    assert "612345678" not in json.dumps(view)
    cache.write_row(row)
    stored = fake.hget(cache_key("job-abc"), "d").decode()
    assert "612345678" not in stored and "sms" in stored
    assert job_view(make_row(phone_number=None))["sms"] is False


def test_written_behind_the_newest_view_lands_and_wakes_streams(cache, fake):
    pubsub = fake.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(events_channel("job-abc"))
    cache.connection.script_flush()  # no script loaded yet: the first batch goes through the fallback
    for version in range(1, 6):
        cache.write_behind(make_row(version=version, progress=version * 10))
    assert cache.flush_behind(timeout=5)
    assert cache.read("job-abc")["version"] == 5
    published = []
    deadline = time.monotonic() + 0.3
    while time.monotonic() < deadline:
        message = pubsub.get_message(timeout=0.05)
        if message is not None:
            published.append(int(message["data"]))
    assert published and published[-1] == 5 and published == sorted(published), "coalesced, never backwards"
    pubsub.close()


def test_a_view_written_behind_never_beats_a_newer_one_or_a_tombstone(cache):
    cache.write_row(make_row(version=7, status="completed", progress=100))  # the terminal write, in line
    cache.write_behind(make_row(version=6, progress=90))  # a step's view that was still queued
    assert cache.flush_behind(timeout=5)
    assert cache.read("job-abc")["version"] == 7
    cache.delete("job-abc")
    cache.connection.script_flush()  # a restarted Redis forgot the script: the view goes through it again
    cache.write_behind(make_row(version=8))
    assert cache.flush_behind(timeout=5)
    with pytest.raises(Gone):
        cache.read("job-abc")


@pytest.fixture
def down():
    """A cache whose Redis is a closed port, on the client the app uses (short timeouts, one retry)."""
    return JobCache(connect(f"redis://127.0.0.1:{free_port()}/0"))


def test_redis_down_reads_are_misses_and_writes_are_skipped(down):
    started = time.monotonic()
    assert down.read("job-abc") is None
    assert down.write_row(make_row()) is None
    down.delete("job-abc")  # no error either
    assert time.monotonic() - started < 2
    down.write_behind(make_row())  # returns at once; the writer thread drops the view with a warning
    assert down.flush_behind(timeout=5)


class NoDatabase:
    """An engine that is never reachable."""

    def connect(self):
        raise sa.exc.OperationalError("SELECT 1", {}, Exception("connection refused"))


def test_read_through_serves_a_hit_without_the_database(cache):
    cache.write_row(make_row(version=7))
    view, source = read_through(cache, NoDatabase(), "job-abc")
    assert source == "hit" and view["version"] == 7


def test_read_through_with_neither_raises_dependency_unavailable(down):
    with pytest.raises(DependencyUnavailable):
        read_through(down, NoDatabase(), "job-abc")


class OneRow:
    """An engine whose every connection answers; `job_queries.get` is patched to return the row."""

    def connect(self):
        return contextlib.nullcontext(None)


def published_on(pubsub, seconds: float = 0.3) -> list[bytes]:
    messages, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        message = pubsub.get_message(timeout=0.05)
        if message is not None:
            messages.append(message["data"])
    return messages


def test_a_cold_read_refills_the_cache_without_waking_streams(cache, fake, monkeypatch):
    """A stream already woke for every version a refill can bring (the worker's write published it): a
    refill of a missing view is news to nobody, and a wake-up would make every stream of the job read
    the events table for nothing."""
    monkeypatch.setattr(job_queries, "get", lambda conn, job_id: make_row(version=4))
    pubsub = fake.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(events_channel("job-abc"))
    view, source = read_through(cache, OneRow(), "job-abc")
    assert source == "miss" and view["version"] == 4
    assert cache.read("job-abc")["version"] == 4
    assert published_on(pubsub) == []
    pubsub.close()


def test_a_refill_that_replaces_an_older_view_still_wakes_streams(cache, fake):
    """An older view in place means a write (and its wake-up) was missed: the refill wakes streams then."""
    cache.write_row(make_row(version=2))
    pubsub = fake.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(events_channel("job-abc"))
    assert cache.refill_row(make_row(version=3)) is True
    assert cache.refill_row(make_row(version=3)) is False
    assert published_on(pubsub) == [b"3"]
    pubsub.close()


def test_a_tombstone_wakes_streams_even_where_no_view_was_cached(cache, fake):
    pubsub = fake.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(events_channel("job-abc"))
    cache.delete("job-abc")
    assert published_on(pubsub) == [str(TOMBSTONE_VERSION).encode()]
    pubsub.close()
