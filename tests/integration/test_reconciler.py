"""The reconciler's pointer check is bounded: a steady pass checks the jobs due or changed since its last
pass and one rotating page of older ones; a loss of Redis's data, or a new scheduler, sweeps them all.
One pass at a time across schedulers, however long: a pass renews its lock between pages, stops when it
finds the lock taken over, and stops at the next page when its scheduler is told to stop.
Real Postgres and Redis; the rotating page is made small so a handful of jobs spans several pages."""

from __future__ import annotations

import itertools
import math
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from rq.job import Job
from rq.utils import utcformat

from searchjobs.db import locks
from searchjobs.queue import POPPED_MARGIN, is_waiting, rq_job_id, search_queue
from searchjobs.runtime import Runtime
from searchjobs.worker import reconciler
from searchjobs.worker.reconciler import MARKER_SWEPT, REDIS_MARKER, ReconcilerState, reconcile
from tests.integration.test_state_machine import new_job, sql

PAGE = 3
JOBS = 7
BOUND = math.ceil(JOBS / PAGE) + 1  # the bound the module states: ceil(queued / page) + 1 passes


@pytest.fixture
def queued(client, runtime, monkeypatch) -> list[str]:
    """JOBS pending jobs submitted an hour ago (each enqueued at its submit), in row-id order."""
    monkeypatch.setattr(reconciler, "ROTATION_PAGE", PAGE)
    ids = [new_job(client) for _ in range(JOBS)]
    sql(runtime, "UPDATE search_jobs SET updated_at = now() - interval '1 hour'")
    return ids


def steady_state(runtime) -> ReconcilerState:
    """A scheduler past its first pass (which swept every job and found every pointer)."""
    state = ReconcilerState()
    assert reconcile(runtime, state=state).requeued == []
    assert runtime.redis.get(REDIS_MARKER) == MARKER_SWEPT
    return state


def drop_pointer(runtime, job_id: str) -> None:
    """What an eviction or a hand-deleted RQ job does: the pointer goes, Redis keeps the rest."""
    Job.fetch(rq_job_id(job_id, 0), connection=runtime.redis).delete()
    assert not is_waiting(runtime.redis, rq_job_id(job_id, 0))


def times_queued(runtime, job_id: str) -> int:
    return search_queue(runtime.redis).get_job_ids().count(rq_job_id(job_id, 0))


@pytest.mark.parametrize("position", [0, JOBS // 2, JOBS - 1])
def test_a_pointer_lost_while_redis_kept_its_data_is_back_within_the_bound_and_once(runtime, queued, position):
    state = steady_state(runtime)
    lost = queued[position]
    drop_pointer(runtime, lost)

    requeued_by_pass = [reconcile(runtime, state=state).requeued for _ in range(BOUND)]
    assert sum(requeued_by_pass, []) == [lost], requeued_by_pass  # found within the bound, and only it
    assert times_queued(runtime, lost) == 1
    # a full rotation more: the pointer is there, so nothing is enqueued twice
    assert all(reconcile(runtime, state=state).requeued == [] for _ in range(BOUND))
    assert all(times_queued(runtime, job_id) == 1 for job_id in queued)


def test_a_steady_pass_checks_a_page_not_the_whole_queue(runtime, queued):
    state = steady_state(runtime)
    for job_id in queued:
        drop_pointer(runtime, job_id)

    first = reconcile(runtime, state=state).requeued
    assert first == queued[:PAGE]  # the rotation starts at the lowest row ids, one page a pass
    rest = [job_id for _ in range(BOUND - 1) for job_id in reconcile(runtime, state=state).requeued]
    assert sorted(first + rest) == sorted(queued)  # every one within the bound, each once
    assert all(times_queued(runtime, job_id) == 1 for job_id in queued)


def test_a_job_due_since_the_last_pass_is_checked_at_once_outside_the_page(runtime, queued):
    state = steady_state(runtime)
    retried = queued[-1]  # past the first page of the rotation
    drop_pointer(runtime, retried)
    sql(runtime, "UPDATE search_jobs SET run_after = now(), updated_at = now() WHERE job_id = :j", j=retried)

    assert reconcile(runtime, state=state).requeued == [retried]
    assert times_queued(runtime, retried) == 1


def test_a_flushed_redis_gets_every_pending_job_back_in_one_pass(runtime, queued):
    state = steady_state(runtime)
    runtime.redis.flushall()

    assert sorted(reconcile(runtime, state=state).requeued) == sorted(queued)
    assert all(is_waiting(runtime.redis, rq_job_id(job_id, 0)) for job_id in queued)
    assert runtime.redis.get(REDIS_MARKER) == MARKER_SWEPT
    assert reconcile(runtime, state=state).requeued == []


def test_a_sweep_cut_short_after_a_loss_is_done_again_by_the_next_pass(runtime, queued):
    """The marker says "sweeping" from the start of the sweep after a loss until its end: a scheduler that
    died in between leaves it so, and the next pass, of any scheduler, sweeps again without the grace."""
    steady_state(runtime)
    runtime.redis.flushall()
    runtime.redis.set(REDIS_MARKER, reconciler.MARKER_SWEEPING)

    other = steady_state_of_another_scheduler(runtime)
    assert sorted(reconcile(runtime, state=other).requeued) == sorted(queued)
    assert runtime.redis.get(REDIS_MARKER) == MARKER_SWEPT


def steady_state_of_another_scheduler(runtime) -> ReconcilerState:
    """A scheduler past its first pass, as far as its own state goes (it saw the marker swept then)."""
    with runtime.engine.connect() as conn:
        now = conn.execute(sa.text("SELECT now()")).scalar_one()
    return ReconcilerState(views_since=now, pointers_since=now)


def test_a_new_scheduler_sweeps_every_pending_job(runtime, queued):
    state = steady_state(runtime)
    for job_id in queued:
        drop_pointer(runtime, job_id)
    assert len(reconcile(runtime, state=state).requeued) == PAGE  # the running one: a page a pass

    taking_over = ReconcilerState()  # a restarted scheduler, or a second one taking the lock
    assert sorted(reconcile(runtime, state=taking_over).requeued) == sorted(queued[PAGE:])
    assert all(times_queued(runtime, job_id) == 1 for job_id in queued)


def age_pointer(runtime, job_id: str, seconds: float) -> None:
    """Make the pointer look enqueued `seconds` ago (RQ's own format of `enqueued_at`)."""
    stamp = utcformat(datetime.now(UTC) - timedelta(seconds=seconds))
    runtime.redis.hset(Job.key_for(rq_job_id(job_id, 0)), "enqueued_at", stamp)


def test_a_pointer_popped_by_a_worker_that_died_before_starting_it_is_enqueued_again(runtime, queued):
    """A worker pops the pointer, then dies (or its Redis does) before marking it started: its hash still
    says "queued", in no queue. It is found within the bound once it is older than the queue's head by
    the margin, and enqueued once."""
    state = steady_state(runtime)
    lost = queued[JOBS // 2]
    runtime.redis.lrem(search_queue(runtime.redis).key, 0, rq_job_id(lost, 0))  # what the dead worker's BLPOP did
    age_pointer(runtime, lost, POPPED_MARGIN.total_seconds() + 60)
    assert runtime.redis.hget(Job.key_for(rq_job_id(lost, 0)), "status") == b"queued"

    requeued_by_pass = [reconcile(runtime, state=state).requeued for _ in range(BOUND)]
    assert sum(requeued_by_pass, []) == [lost], requeued_by_pass
    assert times_queued(runtime, lost) == 1
    assert all(reconcile(runtime, state=state).requeued == [] for _ in range(BOUND))


def test_an_old_pointer_still_in_its_queue_is_not_enqueued_twice(runtime, queued):
    """Enqueue times are the enqueuing hosts' clocks: a pointer that merely looks older than the head is
    looked up in its queue before anything is enqueued."""
    state = steady_state(runtime)
    for job_id in queued[1:]:
        age_pointer(runtime, job_id, POPPED_MARGIN.total_seconds() + 60)
    assert all(reconcile(runtime, state=state).requeued == [] for _ in range(BOUND))
    assert all(times_queued(runtime, job_id) == 1 for job_id in queued)


def test_two_schedulers_never_run_a_pass_at_once(runtime, settings, queued, monkeypatch):
    """A sweep of a long queue outlasts the lock's lease (about 16 s at 100k queued against 10 s): the
    pass renews its lock as it goes, so a second scheduler polling for the lock meanwhile is refused
    until the first gives it back. Two schedulers (two runtimes, two holders) loop on the lock while each
    sweep takes about 1.5 leases (pages of one job, each made slow)."""
    lease = 2.0
    monkeypatch.setattr(reconciler, "RECONCILE_LOCK_SECONDS", lease)
    monkeypatch.setattr(reconciler, "RECONCILE_BATCH", 1)
    page_seconds = 1.5 * lease / JOBS

    check_pointers = reconciler._enqueue_if_missing

    def slow_page(rt, pending, lock):
        time.sleep(page_seconds)
        return check_pointers(rt, pending, lock)
    monkeypatch.setattr(reconciler, "_enqueue_if_missing", slow_page)

    sweeps: list[tuple[str, float, float]] = []  # (holder, start, end) of each pointer step that ran
    pointer_step = reconciler._enqueue_missing_pointers

    def recorded(rt, *args, **kwargs):
        start = time.monotonic()
        try:
            return pointer_step(rt, *args, **kwargs)
        finally:
            sweeps.append((rt.worker_name, start, time.monotonic()))
    monkeypatch.setattr(reconciler, "_enqueue_missing_pointers", recorded)

    other = Runtime.from_settings(settings)
    stop = threading.Event()

    def scheduler(rt):
        state = ReconcilerState()  # each its first pass: a sweep of every pending job
        while not stop.is_set():
            reconcile(rt, state=state)
            stop.wait(0.05)
    threads = [threading.Thread(target=scheduler, args=(rt,)) for rt in (runtime, other)]
    try:
        for thread in threads:
            thread.start()
        time.sleep(3 * lease)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
        other.close()

    assert len(sweeps) >= 2, sweeps
    for (holder, start, end), (other_holder, other_start, other_end) in itertools.combinations(sweeps, 2):
        if holder != other_holder:
            assert end <= other_start or other_end <= start, ("two passes at once", sweeps)


def test_a_pass_whose_lock_was_taken_over_stops_and_the_next_one_sweeps_again(runtime, queued, monkeypatch):
    """A scheduler frozen (or cut off) mid-sweep past its lease finds, when it goes on, that another took
    the lock: it stops before its next write to Redis (the page it had checked is not enqueued), and its
    next pass still sweeps every job (its state did not move)."""
    monkeypatch.setattr(reconciler, "RECONCILE_LOCK_SECONDS", 0.3)
    monkeypatch.setattr(reconciler, "RECONCILE_BATCH", 1)
    for job_id in queued:
        drop_pointer(runtime, job_id)
    check_pointers = reconciler._enqueue_if_missing
    pages = []

    def frozen_in_the_first_page(rt, pending, lock):
        pages.append(pending)
        if len(pages) == 1:
            time.sleep(0.5)  # the lease runs out meanwhile, and another scheduler takes the lock
            assert locks.take(rt.db, reconciler.RECONCILE_LOCK, "another-scheduler", 10)
        return check_pointers(rt, pending, lock)
    monkeypatch.setattr(reconciler, "_enqueue_if_missing", frozen_in_the_first_page)

    state = ReconcilerState()
    report = reconcile(runtime, state=state)
    assert report.lock_lost and len(pages) == 1 and state.pointers_since is None
    assert reconcile(runtime, state=state).skipped  # the other one holds it

    locks.give_back(runtime.db, reconciler.RECONCILE_LOCK, "another-scheduler")
    monkeypatch.setattr(reconciler, "_enqueue_if_missing", check_pointers)
    report = reconcile(runtime, state=state)
    assert sorted(report.requeued) == sorted(queued) and not report.lock_lost
    assert all(times_queued(runtime, job_id) == 1 for job_id in queued)


def test_a_scheduler_told_to_stop_ends_its_sweep_at_the_next_page(runtime, queued, monkeypatch):
    """SIGTERM mid-sweep: a sweep of a long queue takes longer than supervisors wait (60k queued: 10.6 s
    before this, up to ~28 s at 100k), so the pass ends at its next page; the marker still says
    "sweeping", so the next pass of any scheduler sweeps again, without the grace."""
    monkeypatch.setattr(reconciler, "RECONCILE_BATCH", 1)
    runtime.redis.flushall()
    stop = threading.Event()
    check_pointers = reconciler._enqueue_if_missing
    pages = []

    def signalled_during_the_first_page(rt, pending, control):
        pages.append(pending)
        stop.set()
        return check_pointers(rt, pending, control)
    monkeypatch.setattr(reconciler, "_enqueue_if_missing", signalled_during_the_first_page)

    state = ReconcilerState()
    report = reconcile(runtime, state=state, stop=stop)
    assert report.stopped and len(pages) == 1 and report.requeued == []
    assert runtime.redis.get(REDIS_MARKER) == reconciler.MARKER_SWEEPING and state.pointers_since is None

    monkeypatch.setattr(reconciler, "_enqueue_if_missing", check_pointers)
    assert sorted(reconcile(runtime, state=state).requeued) == sorted(queued)
    assert runtime.redis.get(REDIS_MARKER) == MARKER_SWEPT
