"""Two real scheduler processes, one frozen (SIGSTOP) in the middle of a sweep that is longer than the
reconciler's lock: the other takes the lock over once it has run out, the woken one stops its pass at
its next page, and every pending job ends up with a pointer, a few with two (the page the frozen one was
enqueueing when it froze is sent when it wakes: at most RECONCILE_BATCH duplicates, each a refused claim).

The cluster of tests/faults/cluster.py with no worker (nothing takes the pointers meanwhile), and a
queue of bulk pending jobs inserted straight into Postgres, then a FLUSHALL: the first pass of any
scheduler after it sweeps them all.
"""

from __future__ import annotations

import collections
import json
import signal
import time

import pytest
import sqlalchemy as sa

from searchjobs.queue import search_queue
from searchjobs.worker.reconciler import RECONCILE_BATCH, RECONCILE_LOCK_SECONDS
from tests.faults.cluster import record, running_cluster, wait_for

pytestmark = [pytest.mark.faults, pytest.mark.slow]

QUEUED = 60_000  # pending jobs the sweep enqueues: 15-30 s of sweep on 2 busy cores
FROZEN_AT = 2_000  # pointers enqueued when the first scheduler is frozen: its sweep is under way
# past its lock's lease, and back while the second one's sweep (started once that lease ran out) goes on
FROZEN_FOR = RECONCILE_LOCK_SECONDS + 2


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with running_cluster(tmp_path_factory.mktemp("schedulers"), workers=0) as cluster:
        yield cluster


def lock_lost_lines(cluster, proc) -> int:
    index = next(i for i, (_, p) in enumerate(cluster.processes) if p is proc)
    text = (cluster.log_dir / f"scheduler-{index}.log").read_text(errors="replace")
    return sum(1 for line in text.splitlines()
               if line.startswith("{") and json.loads(line).get("msg", "").startswith("reconciler pass stopped"))


@pytest.fixture
def lost_queue(cluster):
    """QUEUED pending jobs (submitted an hour ago, so no grace applies) whose pointers Redis lost."""
    with cluster.engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO search_jobs (job_id, status, progress, stage, categories, updated_at) "
            "SELECT 'bulk-' || lpad(g::text, 38, '0'), 'pending', 0, 'queued', ARRAY['dress'], "
            "now() - interval '1 hour' FROM generate_series(1, :n) g"), {"n": QUEUED})
    cluster.redis.flushall()
    yield search_queue(cluster.redis)
    with cluster.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM search_jobs WHERE job_id LIKE 'bulk-%'"))
    cluster.redis.flushall()


def test_a_scheduler_frozen_mid_sweep_is_taken_over_and_stops_when_woken(cluster, lost_queue):
    queue = lost_queue
    first = next(p for kind, p in cluster.processes if kind == "scheduler")
    wait_for(lambda: queue.count >= FROZEN_AT, 60, "the first scheduler's sweep under way", interval=0.02)
    first.send_signal(signal.SIGSTOP)
    frozen, at_freeze = time.time(), queue.count
    second = cluster.start("scheduler")
    try:
        time.sleep(FROZEN_FOR)
        taken_over = queue.count
    finally:
        first.send_signal(signal.SIGCONT)
    woken = time.time()

    wait_for(lambda: lock_lost_lines(cluster, first) == 1, 20, "the woken scheduler to stop its pass")
    stopped = time.time()
    wait_for(lambda: len(set(queue.get_job_ids())) == QUEUED, 120, "every pending job to have a pointer",
             interval=0.5)
    swept = time.time()
    time.sleep(3)  # a few more passes of both: nothing more is enqueued
    ids = collections.Counter(queue.get_job_ids())
    twice = sum(1 for n in ids.values() if n > 1)
    assert len(ids) == QUEUED and max(ids.values()) <= 2 and twice <= RECONCILE_BATCH, ids.most_common(3)
    assert lock_lost_lines(cluster, second) == 0
    assert taken_over > at_freeze  # the second scheduler swept while the first was frozen
    print(f"[faults] two schedulers: {twice} pointers enqueued twice")
    record("two schedulers: woken one stopped its pass after", stopped - woken)
    record("two schedulers: every pointer back after the freeze", swept - frozen)


def test_a_scheduler_stopped_mid_sweep_exits_at_once_and_the_next_one_sweeps(cluster, lost_queue):
    """SIGTERM mid-sweep: the pass ends at its next page (before, the scheduler finished the sweep first:
    10.6 s at 60k queued, longer than many supervisors wait at 100k), and the next scheduler sweeps again."""
    queue = lost_queue
    running = [p for kind, p in cluster.processes if kind == "scheduler" and p.poll() is None]
    scheduler = running[0]
    for other in running[1:]:  # one scheduler, so it is the one sweeping
        other.send_signal(signal.SIGTERM)
        other.wait(60)
    cluster.redis.flushall()  # the marker too: its next pass sweeps
    wait_for(lambda: queue.count >= FROZEN_AT, 60, "the scheduler's sweep under way", interval=0.02)
    scheduler.send_signal(signal.SIGTERM)
    signalled = time.time()
    assert scheduler.wait(10) == 0
    exited = time.time()
    assert queue.count < QUEUED  # it stopped mid-sweep

    cluster.start("scheduler")
    wait_for(lambda: len(set(queue.get_job_ids())) == QUEUED, 120, "every pending job to have a pointer",
             interval=0.5)
    assert max(collections.Counter(queue.get_job_ids()).values()) == 1
    record("scheduler SIGTERM mid-sweep: exit after", exited - signalled)
    assert exited - signalled < 5
