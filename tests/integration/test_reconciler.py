"""The reconciler's pointer check is bounded: a steady pass checks the jobs due or changed since its last
pass and one rotating page of older ones; a loss of Redis's data, or a new scheduler, sweeps them all.
Real Postgres and Redis; the rotating page is made small so a handful of jobs spans several pages."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from rq.job import Job
from rq.utils import utcformat

from searchjobs.queue import POPPED_MARGIN, is_waiting, rq_job_id, search_queue
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
