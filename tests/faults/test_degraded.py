"""Nothing lost, nothing twice, under the faults that do not kill a process: Redis full, read-only, cut
from its primary or loading; a frozen worker; a storm of terminated Postgres backends; an exhausted
connection pool; a cache write that was skipped; a delete racing a refill.

Real web, worker and scheduler processes (tests/faults/cluster.py). Each scenario asserts the same
invariants as tests/faults/test_faults.py (every job completed once, one SMS per phone, progress never
backwards, no 5xx but 503 with Retry-After) and prints its figure.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest
import redis
import requests
import sqlalchemy as sa
from redis.backoff import NoBackoff
from redis.retry import Retry

from searchjobs import clients
from searchjobs.embedded import free_port
from searchjobs.jobs.cache import cache_key
from tests.faults.cluster import (
    FAST_SECONDS,
    FINISH_TIMEOUT,
    KILL_BAR,
    LEASE,
    RECONCILE,
    REDIS_RESUME_BAR,
    WORKERS,
    record,
    running_cluster,
    wait_for,
)

pytestmark = [pytest.mark.faults, pytest.mark.slow]

POOL_SIZE = 2  # each process's pool (plus 5 overflow): small, so the pool-exhaustion scenario can fill it
POOL_TIMEOUT = 2.0  # seconds a request waits for a pooled connection before it answers 503
# After Redis takes writes again, workers are back within their capped restart pause plus a pass or two.
REDIS_WRITABLE_BAR = REDIS_RESUME_BAR + 3
BALLAST_KEYS = 40_000  # keys a restarted Redis loads slowly (key-load-delay) in the LOADING scenario
LOCK_SECONDS = 4.0  # how long the pool-exhaustion scenario blocks every read of search_jobs


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    env = {"SEARCHJOBS_DB_POOL_SIZE": str(POOL_SIZE), "SEARCHJOBS_DB_POOL_TIMEOUT": str(POOL_TIMEOUT)}
    with running_cluster(tmp_path_factory.mktemp("degraded"), **env) as cluster:
        yield cluster


def live_workers(cluster) -> int:
    return sum(1 for proc in cluster.workers() if proc.poll() is None)


def serve_during_outage(cluster, ids: list[str], seconds: float) -> list[str]:
    """While Redis refuses something: submits answer 202, reads 200, /readyz 200 "degraded"."""
    submitted = cluster.submit_batch(3)  # asserts 202 for each: the rows are committed
    for job_id in (ids[-1], submitted[0]):
        response = cluster.request("GET", f"/api/search-jobs/{job_id}", "status while Redis refuses")
        assert response.status_code == 200, response.text
    ready = cluster.request("GET", "/readyz", "readyz while Redis refuses")
    assert ready.status_code == 200 and ready.json()["status"] == "degraded", ready.text
    time.sleep(seconds)
    assert live_workers(cluster) == WORKERS, cluster.log_tail()  # no worker died of it
    return submitted


def first_claim_after(cluster, ids: list[str], moment: float) -> float | None:
    return min((t for t in (cluster.first_event_after(j, moment, ("claimed",)) for j in ids) if t), default=None)


def test_redis_full_under_noeviction(cluster):
    cluster.keep_workers()
    ids = cluster.submit_batch()
    cluster.wait_mid_job(ids)
    cluster.redis.config_set("maxmemory", "1")  # every write now answers OOM; reads still work
    full = time.time()
    try:
        during = serve_during_outage(cluster, ids, 3.0)
    finally:
        cluster.redis.config_set("maxmemory", "0")
    writable = time.time()
    waiting = [j for j, r in cluster.rows(ids + during).items() if r["status"] == "pending"]
    resumed = wait_for(lambda: first_claim_after(cluster, waiting, writable), REDIS_WRITABLE_BAR + 5,
                       "a worker to take a job once Redis takes writes again")
    cluster.check(ids + during)
    record("Redis OOM: outage", writable - full)
    record("Redis OOM: first waiting job claimed after writes came back", resumed - writable)
    assert resumed - writable < REDIS_WRITABLE_BAR


def test_redis_read_only_then_master_down(cluster):
    cluster.keep_workers()
    ids = cluster.submit_batch()
    cluster.wait_mid_job(ids)
    # what a replica looks like during a failover: following a primary that is not there
    cluster.redis.replicaof("127.0.0.1", free_port())
    demoted = time.time()
    try:
        during = serve_during_outage(cluster, ids, 2.0)  # READONLY: writes refused, reads served
        cluster.redis.config_set("replica-serve-stale-data", "no")  # MASTERDOWN: reads refused too
        during += serve_during_outage(cluster, ids, 2.0)
    finally:
        cluster.redis.replicaof("no", "one")
        cluster.redis.config_set("replica-serve-stale-data", "yes")
    promoted = time.time()
    waiting = [j for j, r in cluster.rows(ids + during).items() if r["status"] == "pending"]
    resumed = wait_for(lambda: first_claim_after(cluster, waiting, promoted), REDIS_WRITABLE_BAR + 5,
                       "a worker to take a job once Redis is a primary again")
    cluster.check(ids + during)
    record("Redis READONLY+MASTERDOWN: outage", promoted - demoted)
    record("Redis READONLY+MASTERDOWN: first waiting job claimed after promotion", resumed - promoted)
    assert resumed - promoted < REDIS_WRITABLE_BAR


def test_redis_loading_its_dataset_after_a_restart(cluster):
    cluster.keep_workers()
    ids = cluster.submit_batch()
    cluster.wait_mid_job(ids)
    ballast = cluster.redis.pipeline(transaction=False)
    for i in range(BALLAST_KEYS):
        ballast.set(f"ballast:{i}", "x")
    ballast.execute()
    cluster.redis.save()
    valkey = cluster.stack.valkey
    valkey.kill()
    # reload slowly, answering LOADING meanwhile (key-load-delay: microseconds per key, a test setting)
    valkey.extra_config = {"key-load-delay": "20", "loading-process-events-interval-bytes": "1024"}
    restarted = time.time()
    loading_seen = threading.Event()

    def start():
        valkey.start()  # returns once the server accepts connections (it may still be loading)

    starter = threading.Thread(target=start, daemon=True)
    starter.start()
    probe = redis.Redis(port=valkey.port, password=valkey.password, socket_timeout=1, retry=Retry(NoBackoff(), 0))  # see every LOADING
    during: list[str] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            probe.ping()
            if loading_seen.is_set():
                break
        except redis.exceptions.BusyLoadingError:
            if not loading_seen.is_set():
                loading_seen.set()
                during = serve_during_outage(cluster, ids, 0.0)
        except redis.exceptions.ConnectionError:
            pass
        time.sleep(0.05)
    loaded = time.time()
    starter.join(30)
    valkey.extra_config = {}
    probe.close()
    assert loading_seen.is_set(), "the restarted Redis never answered LOADING"
    cluster.redis.delete(*[f"ballast:{i}" for i in range(BALLAST_KEYS)])
    cluster.check(ids + during)
    assert live_workers(cluster) == WORKERS
    record("Redis LOADING: restart until the dataset was loaded", loaded - restarted)


def test_frozen_worker_is_fenced_after_it_wakes(cluster):
    cluster.keep_workers()
    ids = cluster.submit_batch(12, phone=True)
    victim, proc = cluster.wait_mid_job(ids)
    frozen_name = cluster.rows([victim])[victim]["worker_name"]
    proc.send_signal(signal.SIGSTOP)
    frozen = time.time()
    try:
        rerun = cluster.wait_event(victim, frozen, ("claimed",), timeout=KILL_BAR + 5)
        done = wait_for(lambda: cluster.rows([victim])[victim]["status"] == "completed", FINISH_TIMEOUT,
                        "the re-run of the frozen worker's job to complete")
        assert done
        wait_for(lambda: len([m for m in cluster.fake.messages if m["to"] == cluster.jobs[victim]]) == 1,
                 20, "the re-run's SMS")
        before = cluster.rows([victim])[victim]
        events_before = [e["id"] for e in cluster.events([victim])[victim]]
        view_before = cluster.redis.hgetall(cache_key(victim))
    finally:
        proc.send_signal(signal.SIGCONT)
    woke = time.time()

    # the woken worker renews (and learns it lost the lease) or tries its next step: either way, nothing
    time.sleep(LEASE + 2 * FAST_SECONDS + 1)
    after = cluster.rows([victim])[victim]
    assert (after["version"], after["updated_at"], after["status"]) == \
        (before["version"], before["updated_at"], before["status"])
    assert [e["id"] for e in cluster.events([victim])[victim]] == events_before
    assert cluster.redis.hgetall(cache_key(victim)) == view_before
    assert proc.poll() is None, "the woken worker must go back to work, not exit"
    cluster.check(ids)

    # and it does go back to work without a restart
    more = cluster.submit_batch(9)
    pid_prefix = f"{cluster.hostname}.{proc.pid}."
    assert frozen_name.startswith(pid_prefix)
    wait_for(lambda: cluster.query(
        "SELECT 1 FROM search_job_events WHERE kind = 'claimed' AND created_at > to_timestamp(:t) "
        "AND detail->>'worker' LIKE :w", t=woke, w=pid_prefix + "%"), 30, "the woken worker to claim a job")
    cluster.check(more)
    record("SIGSTOP: frozen worker's job re-claimed elsewhere", rerun - frozen)
    assert rerun - frozen < KILL_BAR


def test_storm_of_terminated_postgres_backends(cluster):
    cluster.keep_workers()
    stop = threading.Event()
    killed = []

    def storm():
        engine = sa.create_engine(cluster.engine.url, poolclass=sa.pool.NullPool)
        while not stop.is_set():
            with engine.connect() as conn:
                killed.append(conn.execute(sa.text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE application_name LIKE 'searchjobs[%' AND pid <> pg_backend_pid()")).scalar())
            time.sleep(0.3)
        engine.dispose()

    storming = threading.Thread(target=storm, daemon=True)
    storming.start()
    started = time.time()
    try:
        # a careful client retries a 503 with its Idempotency-Key: one job per submit, whatever answered
        ids = [cluster.submit(retry_503=20).json()["job_id"] for _ in range(15)]
        for job_id in ids[:5]:
            cluster.request("GET", f"/api/search-jobs/{job_id}", "status in a backend storm")
        time.sleep(max(0.0, started + 5 - time.time()))
    finally:
        stop.set()
        storming.join(10)
    calm = time.time()
    rows = cluster.wait_finished(ids)
    cluster.check(ids)
    unavailable = sum(1 for what, status, _ in cluster.responses if status == 503)
    record("backend storm: last job finished after the storm", max(r["finished_at"].timestamp() for r in
                                                                   rows.values()) - calm)
    print(f"[faults] backend storm: {sum(killed)} backends terminated, {unavailable} answers were 503")


def test_pool_exhaustion_answers_503_within_the_pool_timeout(cluster):
    cluster.keep_workers()
    ids = cluster.submit_batch(3, retry_503=10)  # a pooled connection may still be dead from an earlier fault
    cluster.check(ids)
    holder = cluster.engine.connect()
    trans = holder.begin()
    holder.execute(sa.text("LOCK TABLE search_jobs IN ACCESS EXCLUSIVE MODE"))  # a stuck Postgres, to a reader
    release = threading.Timer(LOCK_SECONDS, trans.rollback)
    release.start()
    # cold reads: every request needs a pooled connection. The views go once the table is locked: the
    # reconciler re-writes the views of rows changed in its last ~20 s each pass, and one that read the
    # rows before the lock writes them a moment later, so a view dropped before could be back in time
    time.sleep(0.3)
    for job_id in ids:
        cluster.redis.delete(cache_key(job_id))
    try:
        def read(i):
            t = time.time()
            with requests.Session() as session:
                response = cluster.request("GET", f"/api/search-jobs/{ids[i % len(ids)]}", "read, pool exhausted",
                                           session=session)
            return response.status_code, response.headers.get("Retry-After"), time.time() - t
        with ThreadPoolExecutor(30) as pool:
            answers = list(pool.map(read, range(30)))
    finally:
        release.join()
        holder.close()
    refused = [a for a in answers if a[0] == 503]
    assert refused, answers
    assert all(status in (200, 503) for status, _, _ in answers), answers
    assert all(retry_after for status, retry_after, _ in answers if status == 503)
    slowest_refusal = max(took for _, _, took in refused)
    cluster.check_responses()
    assert cluster.request("GET", f"/api/search-jobs/{ids[0]}", "read after the pool drained").status_code == 200
    record("pool exhaustion: slowest 503", slowest_refusal)
    print(f"[faults] pool exhaustion: {len(refused)} of {len(answers)} reads answered 503 while reads were "
          f"blocked for {LOCK_SECONDS:.0f}s; slowest answer {max(took for _, _, took in answers):.1f}s")
    assert slowest_refusal < POOL_TIMEOUT + 2


def postgres_processes(cluster) -> list[psutil.Process]:
    """The postmaster and every process it started (backends, checkpointer, WAL writer, ...)."""
    postmaster = psutil.Process(int((cluster.stack.postgres.pgdata / "postmaster.pid").read_text().split()[0]))
    return [postmaster, *postmaster.children(recursive=True)]


def test_frozen_postgres_answers_503_within_bounded_time(cluster):
    """Postgres frozen (SIGSTOP on all its processes): sockets stay open and the kernel acknowledges what is
    sent, so only a client-side deadline ends a wait. Before db/deadlines.py, /readyz, a submit and a read
    that needs Postgres waited until the freeze ended (seen live: 40 s client timeouts, and every pooled
    connection held). Now /readyz answers 503 within its probe budget plus a connect timeout, the others
    503 + Retry-After within the statement deadline plus a connect timeout, a cached read 200."""
    from searchjobs.db.engine import CONNECT_TIMEOUT, STATEMENT_DEADLINE
    from searchjobs.web.health import READY_PROBE_DB_SECONDS

    cluster.keep_workers()
    ids = cluster.submit_batch(2, retry_503=10)  # a pooled connection may still be dead from an earlier fault
    cluster.wait_finished(ids)
    assert cluster.request("GET", f"/api/search-jobs/{ids[0]}", "cached read before the freeze").status_code == 200
    never_existed = "/api/search-jobs/never-existed-frozen"  # a miss: always a read from Postgres

    def timed(method, path, **kwargs):
        started = time.monotonic()
        response = requests.request(method, cluster.base + path, timeout=STATEMENT_DEADLINE + 30, **kwargs)
        return path, response.status_code, response.headers.get("Retry-After"), time.monotonic() - started

    processes = postgres_processes(cluster)
    for process in processes:
        process.send_signal(signal.SIGSTOP)
    try:
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda call: timed(*call[:2], **call[2]), [
                ("GET", "/readyz", {}),
                ("GET", never_existed, {}),
                ("POST", "/api/search-jobs", {"data": {"categories": "dress"},
                                              "files": {"image": ("p.png", cluster.images[0], "image/png")}}),
                ("GET", f"/api/search-jobs/{ids[0]}", {}),
            ]))
    finally:
        for process in processes:
            process.send_signal(signal.SIGCONT)
    by_path = {path: (status, retry_after, took) for path, status, retry_after, took in answers}
    print(f"[faults] frozen Postgres: {answers}")
    ready_status, ready_retry, ready_took = by_path["/readyz"]
    assert ready_status == 503 and ready_retry, answers
    assert ready_took < READY_PROBE_DB_SECONDS + CONNECT_TIMEOUT + 2, answers
    for path in (never_existed, "/api/search-jobs"):
        status, retry_after, took = by_path[path]
        assert status == 503 and retry_after, answers
        assert took < STATEMENT_DEADLINE + CONNECT_TIMEOUT + 3, answers
    assert by_path[f"/api/search-jobs/{ids[0]}"][0] == 200, answers  # from the cache
    record("frozen Postgres: /readyz 503 after", ready_took)
    record("frozen Postgres: slowest 503", max(took for _, status, _, took in answers if status == 503))

    # thawed: the web answers from Postgres again, and jobs still run to the end
    wait_for(lambda: cluster.request("GET", "/readyz", "readyz after the freeze").status_code == 200, 30,
             "/readyz ready again")
    later = cluster.submit_batch(2, retry_503=10)
    cluster.wait_finished(later)
    cluster.check(ids + later)
    cluster.check_responses()


def test_skipped_terminal_cache_write_is_repaired_by_the_reconciler(cluster):
    cluster.keep_workers()
    job_id = cluster.submit_batch(1, categories=("dress", "top"))[0]
    wait_for(lambda: cluster.query("SELECT 1 FROM search_jobs WHERE job_id = :j AND stage LIKE 'searched:dress'",
                                   j=job_id), 30, "the job between its two searches", interval=0.01)
    cluster.redis.replicaof("127.0.0.1", free_port())  # the completion's cache write will be refused
    try:
        wait_for(lambda: cluster.rows([job_id])[job_id]["status"] == "completed", 30, "the job to complete")
    finally:
        cluster.redis.replicaof("no", "one")
    writable = time.time()
    stale = json.loads(cluster.redis.hget(cache_key(job_id), "d"))
    assert stale["status"] == "processing", "the terminal write should have been skipped"

    def served_completed():
        response = cluster.request("GET", f"/api/search-jobs/{job_id}", "status after a skipped write")
        return response.headers.get("X-Cache") == "hit" and response.json()["status"] == "completed"
    wait_for(served_completed, 3 * RECONCILE + 2, "the reconciler to repair the view", interval=0.05)
    repaired = time.time()
    scheduler_log = "".join(p.read_text() for p in cluster.log_dir.glob("scheduler-*.log"))
    assert "cached views that were behind Postgres" in scheduler_log
    cluster.check([job_id])
    record("skipped terminal cache write: repaired after Redis took writes again", repaired - writable)
    assert repaired - writable < LEASE  # by the reconciler, before the stale view could expire


def test_delete_racing_a_refill_leaves_the_job_gone(cluster):
    cluster.keep_workers()
    with cluster.engine.begin() as conn:
        _, key = clients.create(conn, f"owner-{time.time()}")
    auth = {"Authorization": f"Bearer {key}"}
    job_id = cluster.submit_batch(1, headers=auth, phone=False)[0]
    cluster.check([job_id])
    stop, expiring, deleted_at, late = threading.Event(), threading.Event(), [], []

    def reader():
        with requests.Session() as session:
            while not stop.is_set():
                sent = time.time()
                response = cluster.request("GET", f"/api/search-jobs/{job_id}", "read racing a delete",
                                           session=session, headers=auth)
                if deleted_at and sent > deleted_at[0] and response.status_code != 404:
                    late.append(response.status_code)

    def expire_view():  # the view keeps expiring, so readers keep refilling it from Postgres
        while expiring.is_set():
            cluster.redis.delete(cache_key(job_id))
            time.sleep(0.002)

    expiring.set()
    expirer = threading.Thread(target=expire_view, daemon=True)
    threads = [threading.Thread(target=reader, daemon=True) for _ in range(4)]
    for thread in [*threads, expirer]:
        thread.start()
    time.sleep(1.0)
    expiring.clear()  # the last expiry happens now: readers refill it while the DELETE runs
    expirer.join(5)
    response = cluster.request("DELETE", f"/api/search-jobs/{job_id}", "delete", headers=auth)
    assert response.status_code == 204
    deleted_at.append(time.time())
    time.sleep(2.0)
    stop.set()
    for thread in threads:
        thread.join(5)
    assert not late, f"{len(late)} reads sent after the delete found the job"
    assert cluster.redis.hget(cache_key(job_id), "d") == b""  # the tombstone
    cluster.jobs.pop(job_id)
    cluster.check_responses()
    print("[faults] delete racing a refill: no read after the delete found the job")
