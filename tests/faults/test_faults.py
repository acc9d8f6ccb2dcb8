"""Nothing lost: real web, worker and scheduler processes on their own Postgres and Valkey, under faults.

The module starts a private embedded stack (so servers can be killed without
touching the session's), `searchjobs web`, three `searchjobs worker` and one
`searchjobs scheduler`, with short lease and reconcile timings, a search
backend slowed down per category (tests/faults/slow_backend.py) so jobs can be
caught between two persisted steps, and a fake Twilio (tests/faults/cluster.py).
This module: processes killed, stopped and signalled; Redis flushed and
restarted; Postgres stopped. tests/faults/test_degraded.py: Redis full,
read-only and loading, frozen workers, backend storms, pool exhaustion, cache repair.
"""

from __future__ import annotations

import signal
import threading
import time

import pytest
import requests

from searchjobs import links
from tests import pgbouncer
from tests.faults.cluster import (  # noqa: F401  (Cluster and the constants are used by other fault modules)
    BATCH,
    FAST,
    FIGURES,
    GRACE,
    KILL_BAR,
    POSTGRES_BAR,
    REDIS_REBUILD_BAR,
    REDIS_RESUME_BAR,
    SLOW,
    SLOW_SECONDS,
    WORKERS,
    Cluster,
    record,
    running_cluster,
    wait_for,
)

pytestmark = [pytest.mark.faults, pytest.mark.slow]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with running_cluster(tmp_path_factory.mktemp("faults")) as cluster:
        yield cluster


# -- scenarios ---------------------------------------------------------------------------------------


def test_sigkill_of_a_worker_mid_job(cluster):
    cluster.keep_workers()
    ids = cluster.submit_batch()
    victim, proc = cluster.wait_mid_job(ids)
    proc.send_signal(signal.SIGKILL)
    killed = time.time()
    proc.wait()
    cluster.keep_workers()

    detected = cluster.wait_event(victim, killed, ("retried",), timeout=KILL_BAR + 5)
    rerun = cluster.wait_event(victim, killed, ("claimed",), timeout=KILL_BAR + 5)
    resumed = cluster.wait_event(victim, killed, ("progress",), timeout=KILL_BAR + 5)
    cluster.check(ids)

    row = cluster.rows([victim])[victim]
    assert row["attempts"] == 2
    record("worker SIGKILL: lease expiry detected", detected - killed)
    record("worker SIGKILL: job re-claimed", rerun - killed)
    record("worker SIGKILL: next progress event", resumed - killed)
    assert rerun - killed < KILL_BAR


def test_redis_flushall_mid_run(cluster):
    cluster.keep_workers()
    ids = cluster.submit_batch()
    # some jobs running, most still waiting in the queue that is about to vanish
    wait_for(lambda: any(r["status"] == "completed" for r in cluster.rows(ids).values()), 30, "a first job done")
    waiting = [j for j, r in cluster.rows(ids).items() if r["status"] == "pending"]
    assert len(waiting) >= 5
    cluster.redis.flushall()
    flushed = time.time()

    # the job view is served from Postgres meanwhile
    response = cluster.request("GET", f"/api/search-jobs/{waiting[-1]}", "status after flush")
    assert response.status_code == 200 and response.headers["X-Cache"] == "miss"
    wait_for(lambda: cluster.rebuilt(waiting), REDIS_REBUILD_BAR + 5, "the lost pointers to be rebuilt")
    rebuilt = time.time()
    cluster.check(ids)

    first_claim = min(cluster.first_event_after(j, flushed, ("claimed",)) or float("inf") for j in waiting)
    last_done = max(cluster.rows(waiting)[j]["finished_at"].timestamp() for j in waiting)
    record("FLUSHALL: every lost pointer back in Redis", rebuilt - flushed)
    record("FLUSHALL: first lost job claimed", first_claim - flushed)
    record("FLUSHALL: last lost job completed", last_done - flushed)
    assert rebuilt - flushed < REDIS_REBUILD_BAR
    assert len(cluster.workers()) == WORKERS  # no worker died of it


def test_redis_killed_and_restarted_empty(cluster):
    cluster.keep_workers()
    ids = cluster.submit_batch()
    cluster.wait_mid_job(ids)
    cluster.stack.valkey.kill()
    killed = time.time()

    # submits still answer 202 (the row is committed; the reconciler enqueues it later)
    down = cluster.submit_batch(3)
    ready = cluster.request("GET", "/readyz", "readyz without Redis")
    # still ready to serve (Postgres answers): Redis is reported as degraded
    assert ready.status_code == 200 and ready.json()["status"] == "degraded"
    assert ready.json()["checks"]["redis"] != "ok"
    status = cluster.request("GET", f"/api/search-jobs/{down[0]}", "status without Redis")
    assert status.status_code == 200 and status.json()["status"] == "pending"
    time.sleep(max(0.0, killed + 1.5 - time.time()))

    cluster.stack.valkey.start()
    restarted = time.time()
    waiting = [j for j, r in cluster.rows(ids + down).items() if r["status"] == "pending"]  # their pointers died
    assert len(waiting) >= 5
    resumed = wait_for(
        lambda: min((t for t in (cluster.first_event_after(j, restarted, ("claimed",)) for j in waiting) if t),
                    default=None),
        REDIS_RESUME_BAR + 5, "a worker to take a lost job after the restart")
    wait_for(lambda: cluster.rebuilt(waiting), REDIS_REBUILD_BAR + 5, "the lost pointers to be rebuilt")
    rebuilt = time.time()
    cluster.check(ids + down)

    record("Redis restart: outage", restarted - killed)
    record("Redis restart: first lost job claimed after restart", resumed - restarted)
    record("Redis restart: every lost pointer back in Redis", rebuilt - restarted)
    assert rebuilt - restarted < REDIS_REBUILD_BAR and resumed - restarted < REDIS_RESUME_BAR
    assert len(cluster.workers()) == WORKERS  # every worker reconnected instead of dying


def test_postgres_stopped_and_restarted(cluster):
    cluster.keep_workers()
    ids = cluster.submit_batch()
    cluster.wait_mid_job(ids)

    # a client polling throughout: answers are 200 (404 for a job that never existed, a read that always
    # goes to Postgres) or 503 + Retry-After, never a 500. It pauses while Postgres is down, so every web
    # process keeps pooled connections the restart broke: once Postgres is back, none may answer 503
    polling, paused, polled = threading.Event(), threading.Event(), []
    never_existed = f"/api/search-jobs/{links.new_job_id()}"

    def poll():
        with requests.Session() as session:
            while not polling.is_set():
                if paused.is_set():
                    time.sleep(0.05)
                    continue
                for path in ("/api/categories", f"/api/search-jobs/{ids[-1]}", never_existed, "/readyz"):
                    try:
                        response = cluster.request("GET", path, f"poll {path}", session=session)
                        polled.append((time.time(), path, response.status_code))
                    except requests.RequestException as exc:
                        polled.append((time.time(), path, type(exc).__name__))
                time.sleep(0.05)
    poller = threading.Thread(target=poll, daemon=True)
    poller.start()

    wait_for(lambda: sum(1 for _, p, s in polled if p == never_existed and s == 404) >= 6, 15,
             "reads from Postgres before the stop")
    paused.set()
    time.sleep(0.2)  # a poll under way ends
    in_flight = [j for j, r in cluster.rows(ids).items() if r["status"] == "processing"]
    assert in_flight
    cluster.stack.postgres.stop(mode="immediate")
    stopped = time.time()
    try:
        time.sleep(0.3)
        refused = cluster.submit()
        assert refused.status_code == 503 and refused.headers["Retry-After"]
        assert refused.json()["error"]["code"] == "service_unavailable"
        assert cluster.request("GET", "/readyz", "readyz without Postgres").status_code == 503
        time.sleep(max(0.0, stopped + 2.5 - time.time()))
    finally:
        cluster.stack.postgres.start()
    restarted = time.time()
    paused.clear()

    def next_events():
        times = [cluster.first_event_after(j, restarted) for j in in_flight]
        return times if all(times) else None
    resumed = wait_for(next_events, POSTGRES_BAR + 5, "every in-flight job to write again")
    web_back = wait_for(lambda: next((t for t, p, s in polled if t > restarted and p == never_existed
                                      and s == 404), None), 15, "the web to answer from Postgres again")
    cluster.check(ids)
    polling.set()
    poller.join(5)

    # recovered for good: every pooled connection of both engines is pinged at checkout, so no web process
    # answers a read 503 on a connection the restart broke. Straight to Postgres that holds from the
    # restart on; through PgBouncer, from half a second after the web's first read that reaches Postgres
    # again (PgBouncer logs in to the restarted server again, and answers an error on each stale server
    # connection it still hands out)
    back = web_back + 0.5 if pgbouncer.wanted() else restarted
    after = [(p, s) for t, p, s in polled if t > back]
    assert all(s == (404 if p == never_existed else 200) for p, s in after), after
    assert all(s in (200, 503) or (p == never_existed and s == 404) for _, p, s in polled), polled
    attempts = [r["attempts"] for r in cluster.rows(in_flight).values()]
    record("Postgres: outage", restarted - stopped)
    record("Postgres: slowest in-flight job writing again after restart", max(resumed) - restarted)
    record("Postgres: web answering from Postgres after restart", web_back - restarted)
    print(f"[faults] Postgres: {len(in_flight)} jobs in flight, attempts after {attempts}")
    assert max(resumed) - restarted < POSTGRES_BAR
    assert all(r["status"] == "completed" for r in cluster.rows(in_flight).values())


def test_sigterm_finishes_the_job_or_releases_it_and_a_second_one_stops_at_once(cluster):
    # 1. a short job finishes within the grace period, and the worker exits
    cluster.keep_workers()
    short = cluster.submit_batch(6)
    job, proc = cluster.wait_mid_job(short)
    proc.send_signal(signal.SIGTERM)
    signalled = time.time()
    assert proc.wait(GRACE + 5) == 0
    record("SIGTERM: worker exit with a short job", time.time() - signalled)
    row = cluster.rows([job])[job]
    assert row["status"] == "completed" and row["attempts"] == 1
    assert row["finished_at"].timestamp() < signalled + GRACE

    # 2. a long job outlasts the grace: released at its next step, then finished elsewhere
    cluster.keep_workers()
    long_job = cluster.submit_batch(1, categories=SLOW, phone=True)[0]
    _, proc = cluster.wait_mid_job([long_job], stage_like="searched:%")
    proc.send_signal(signal.SIGTERM)
    signalled = time.time()
    assert proc.wait(GRACE + SLOW_SECONDS + 10) == 0
    exited = time.time()
    released = cluster.wait_event(long_job, signalled, ("retried",), timeout=5)
    reclaimed = cluster.wait_event(long_job, signalled, ("claimed",), timeout=10)
    cluster.keep_workers()
    record("SIGTERM: long job released after", released - signalled)
    record("SIGTERM: worker exit with a long job", exited - signalled)
    record("SIGTERM: released job claimed again", reclaimed - released)
    assert GRACE <= released - signalled < GRACE + SLOW_SECONDS + 1
    detail = [e["detail"] for e in cluster.events([long_job])[long_job] if e["kind"] == "retried"]
    assert detail == [{"reason": "shutdown", "error_code": None, "delay_s": 0.0}]

    # 3. a second SIGTERM stops at once; the lease brings the job back
    cut = cluster.submit_batch(1, categories=SLOW, phone=True)[0]
    _, proc = cluster.wait_mid_job([cut], stage_like="searched:%")
    proc.send_signal(signal.SIGTERM)
    time.sleep(1.2)  # RQ ignores a repeat within a second
    proc.send_signal(signal.SIGTERM)
    second = time.time()
    assert proc.wait(10) == 0
    record("second SIGTERM: worker exit", time.time() - second)  # RQ's teardown alone may take a second
    cluster.keep_workers()
    rerun = cluster.wait_event(cut, second, ("claimed",), timeout=KILL_BAR + 5)
    record("second SIGTERM: job re-claimed", rerun - second)
    assert rerun - second < KILL_BAR
    # it stopped at once: neither finished nor released the job; the lease brought it back
    reasons = [e["detail"].get("reason") for e in cluster.events([cut])[cut] if e["kind"] == "retried"]
    assert reasons == ["lease_expired"]

    cluster.check(short + [long_job, cut])
    assert cluster.rows([long_job])[long_job]["attempts"] == 2
