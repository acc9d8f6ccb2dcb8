"""Many machines: the web and three workers on hosts of their own, a host cut off mid-job, a slow link.

Each host is a network namespace on the test's own bridge (tests/faults/hosts.py).
Postgres, Valkey and the fake Twilio listen on the bridge address; the web (with
the scheduler) runs on host `web`, one worker on each of `h1`, `h2`, `h3`, all
over TCP. Timings are the short ones of test_faults.py (lease 4 s, reconciler
1 s, heartbeat 1 s).

- Cut-off host: mid-job, every packet in and out of h2 is dropped (no FIN, no
  RST). Its job is re-run on another host within a lease plus a reconciler
  pass (at the default timings: 20 s + 5 s = 25 s <= 30 s). When the link comes
  back, h2's worker writes nothing for that job (no event, no row change, no
  cache write), drops it and takes the next job without a restart.
- Latency: 20 ms each way between the worker hosts and Postgres (a delaying
  TCP forwarder, tests/faults/delay_proxy.py; the kernel has no netem). Jobs
  complete with every step persisted; per-step write latency and jobs/s per
  worker are printed for 0 ms and 20 ms.

Skipped, with the reason, where network namespaces cannot be made (not root,
no iproute2, `ip netns add` refused).
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import redis
import requests

from searchjobs.embedded import EmbeddedStack
from tests.conftest import server_folder_for
from tests.fake_twilio import FakeTwilio
from tests.faults import hosts
from tests.faults.cluster import (
    LEASE,
    RECONCILE,
    ROOT,
    SLOW,
    Cluster,
    record,
    wait_for,
)

pytestmark = [pytest.mark.faults, pytest.mark.slow]

WORKER_HOSTS = ("h1", "h2", "h3")
# A cut-off worker's job is back within a lease plus a reconciler pass (default 20 + 5 = 25 s <= 30 s).
CUT_BAR = LEASE + 2 * RECONCILE + 2
# After the heal, the cut-off worker's stalled write fails (TCP_USER_TIMEOUT 10 s) or goes through,
# is refused, and the worker is back at work within its reconnect backoff.
BACK_TO_WORK_BAR = 30.0
DELAY = 0.020  # seconds each way between worker hosts and Postgres
LATENCY_JOBS = 24  # jobs per latency phase (a few dozen in all)


class HostsCluster(Cluster):
    """test_faults' Cluster, with every process on a host of `net` and the servers on the bridge."""

    def __init__(self, stack: EmbeddedStack, fake: FakeTwilio, log_dir: Path, net: hosts.Network):
        super().__init__(stack, fake, log_dir)
        self.net = net
        self.base = f"http://{net['web'].address}:{self.port}"
        self.env["PUBLIC_BASE_URL"] = self.base
        self.worker_host: dict[int, str] = {}  # worker pid -> host name

    def start(self, kind: str, *args: str, host: str = "web", env: dict | None = None):
        with open(self.log_dir / f"{kind}-{host}-{len(self.processes)}.log", "wb") as log:
            proc = self.net[host].popen([sys.executable, "-m", "searchjobs", kind, *args], cwd=ROOT,
                                        env={**self.env, **(env or {})}, stdout=log, stderr=log)
        self.processes.append((kind, proc))
        if kind == "worker":
            self.worker_host[proc.pid] = host
        return proc

    def start_workers(self, env: dict | None = None) -> dict[str, object]:
        return {h: self.start("worker", host=h, env=env) for h in WORKER_HOSTS}

    def stop_workers(self) -> None:
        for proc in self.workers():
            proc.terminate()
        for proc in self.workers():
            proc.wait(20)

    def host_of(self, worker_name: str | None) -> str | None:
        proc = self.worker_process(worker_name)
        return self.worker_host.get(proc.pid) if proc is not None else None

    def claimer(self, job_id: str, attempt: int = 1) -> str | None:
        rows = self.query("SELECT detail->>'worker' AS worker FROM search_job_events "
                          "WHERE job_id = :j AND kind = 'claimed' AND attempt = :a", j=job_id, a=attempt)
        return rows[0]["worker"] if rows else None

    def land_on(self, host: str, tries: int = 12, **kwargs) -> tuple[str, object]:
        """Submit jobs until the worker on `host` claims one; the others run theirs to the end.

        Idle workers wait in BLPOPs they renew every second (worker.IDLE_DEQUEUE_TIMEOUT), so which one
        Redis serves next is not known in advance: with two hosts each try lands on `host` about one
        time in two, and twelve tries all landing elsewhere would say the host takes no jobs at all.
        """
        for _ in range(tries):
            job_id = self.submit_batch(1, **kwargs)[0]
            worker = wait_for(lambda j=job_id: self.claimer(j), 10, "the job to be claimed")
            if self.host_of(worker) == host:
                return job_id, self.worker_process(worker)
            self.wait_finished([job_id], timeout=30)
        raise AssertionError(f"no job landed on {host} in {tries} tries")


class RedisMonitor(threading.Thread):
    """Every command Valkey executes, with the client's address (MONITOR), kept in memory."""

    def __init__(self, url: str):
        super().__init__(name="redis-monitor", daemon=True)
        self.client = redis.Redis.from_url(url)
        self.commands: list[dict] = []
        self.ready = threading.Event()

    def run(self) -> None:
        try:
            with self.client.monitor() as monitor:
                self.ready.set()
                for command in monitor.listen():
                    self.commands.append(command)
        except (redis.exceptions.ConnectionError, ValueError, OSError):
            pass  # closed by stop()

    def stop(self) -> None:
        self.client.connection_pool.disconnect()
        self.client.close()

    def from_address(self, address: str, since: float) -> list[dict]:
        return [c for c in list(self.commands) if c.get("client_address") == address and c["time"] >= since]


@pytest.fixture(scope="module")
def cluster(request):
    reason = hosts.unavailable()
    if reason:
        pytest.skip(f"simulated hosts unavailable: {reason}")
    from searchjobs.catalog.load import load_demo
    from searchjobs.db import engine as db
    from searchjobs.db import schema

    base = server_folder_for(request, "hosts")
    net = hosts.Network(["web", *WORKER_HOSTS]).start()
    stack = fake = cluster = None
    try:
        stack = EmbeddedStack(base / "servers", persist_redis=False, host=net.bridge_address,
                              trust_network=str(net.subnet)).start()
        fake = FakeTwilio(host=net.bridge_address).start()
        schema.upgrade(stack.postgres.url)
        engine = db.make_engine(stack.postgres.url, pool_size=1)
        load_demo(engine, 60)
        engine.dispose()
        (base / "logs").mkdir()
        cluster = HostsCluster(stack, fake, base / "logs", net)
        cluster.start("web", "--host", net["web"].address, "--port", str(cluster.port))
        cluster.start("scheduler")
        cluster.start_workers()

        def healthy():
            try:
                return requests.get(f"{cluster.base}/readyz", timeout=1).status_code == 200
            except requests.ConnectionError:
                return False
        wait_for(healthy, 30, "the web process on its host")
        yield cluster
    finally:
        net.close()  # heals any cut, stops every process started on a host, removes namespaces and bridge
        if cluster is not None:
            cluster.http.close()
            cluster.redis.close()
            cluster.engine.dispose()
        if fake is not None:
            fake.stop()
        if stack is not None:
            stack.stop()


def test_a_host_cut_off_mid_job(cluster):
    monitor = RedisMonitor(cluster.stack.valkey.url)
    monitor.start()
    assert monitor.ready.wait(5)
    try:
        victim, proc = cluster.land_on("h2", categories=SLOW, phone=True)
        stale_worker = cluster.claimer(victim)
        wait_for(lambda: cluster.rows([victim])[victim]["stage"].startswith("searched:"), 10,
                 "the victim between two persisted steps")
        h2 = cluster.net["h2"]
        h2.cut()
        cut = time.time()
        others = cluster.submit_batch(6)  # work goes on meanwhile, on h1 and h3

        detected = cluster.wait_event(victim, cut, ("retried",), timeout=CUT_BAR + 5)
        rerun = cluster.wait_event(victim, cut, ("claimed",), timeout=CUT_BAR + 5)
        new_worker = cluster.claimer(victim, attempt=2)
        assert cluster.host_of(new_worker) in ("h1", "h3"), new_worker
        time.sleep(max(0.0, rerun + 1.0 - time.time()))  # heal while the new attempt is running
        log = next(cluster.log_dir.glob("worker-h2-*.log"))
        logged = log.stat().st_size
        h2.heal()
        healed = time.time()

        # the cut-off worker finds out its attempt is over (its write is refused) and goes back to work
        wait_for(lambda: "stale attempt" in log.read_text(errors="replace")[logged:], BACK_TO_WORK_BAR,
                 "the cut-off worker to drop its job", interval=0.1)
        dropped = time.time()
        cluster.check([victim, *others])

        later = []

        def h2_took_one():
            later.extend(cluster.submit_batch(3, phone=False))
            done = cluster.wait_finished(later, timeout=20)
            return any(cluster.host_of(r["worker_name"]) == "h2" for r in done.values())
        wait_for(h2_took_one, BACK_TO_WORK_BAR, "the cut-off worker to complete another job", interval=0)
        back = max(r["finished_at"].timestamp() for r in cluster.rows(later).values()
                   if cluster.host_of(r["worker_name"]) == "h2")
        cluster.check([victim, *others, *later])
        assert proc.poll() is None  # the same process: no restart
    finally:
        monitor.stop()

    # nothing from the stale attempt after the heal: no event, no row change, no cache write
    events = cluster.events([victim])[victim]
    assert not [e for e in events if e["attempt"] == 1 and e["created_at"].timestamp() >= healed], events
    row = cluster.rows([victim])[victim]
    assert row["status"] == "completed" and row["attempts"] == 2 and row["worker_name"] == new_worker
    assert [e["kind"] for e in events].count("completed") == 1
    cache_key, channel = f"searchjobs:job:{victim}", f"searchjobs:events:{victim}"
    stale_cache = [c["command"] for c in monitor.from_address(h2.address, healed)
                   if cache_key in c["command"] or channel in c["command"]]
    assert not stale_cache, stale_cache
    assert monitor.from_address(h2.address, healed), "the monitor saw nothing of h2 after the heal"
    assert stale_worker.startswith(f"{cluster.hostname}.{proc.pid}.")

    record("cut-off host: lease expiry detected", detected - cut)
    record("cut-off host: job re-claimed on another host", rerun - cut)
    record("cut-off host: stale attempt dropped after the heal", dropped - healed)
    record("cut-off host: cut-off worker completed another job after the heal", back - healed)
    assert rerun - cut < CUT_BAR


def _write_seconds(metrics_dir: Path) -> tuple[float, int]:
    """Sum and count of searchjobs_progress_write_seconds over the workers that wrote to `metrics_dir`."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(metrics_dir))
    total = count = 0.0
    for family in registry.collect():
        for sample in family.samples:
            if sample.name == "searchjobs_progress_write_seconds_sum":
                total += sample.value
            elif sample.name == "searchjobs_progress_write_seconds_count":
                count += sample.value
    return total, int(count)


def test_latency_between_workers_and_postgres(cluster, tmp_path):
    pg = cluster.stack.postgres
    proxy = cluster.net.delay_proxy((pg.host, pg.port), DELAY)
    figures = {}
    try:
        for label, delay, url in (("0 ms", 0.0, pg.url),
                                  (f"{DELAY * 1000:.0f} ms", DELAY,
                                   pg.url.replace(f"{pg.host}:{pg.port}", f"{proxy.host}:{proxy.port}"))):
            cluster.stop_workers()
            metrics_dir = tmp_path / f"metrics-{int(delay * 1000)}"
            metrics_dir.mkdir()
            cluster.start_workers(env={"DATABASE_URL": url, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
                                       "SLOW_SEARCH_SECONDS": "0"})
            ids = cluster.submit_batch(LATENCY_JOBS, phone=False)
            rows = cluster.wait_finished(ids)
            cluster.check(ids)
            # every step persisted: image_loaded, features, one per category, ranked, then completed
            events = cluster.events(ids)
            for job_id in ids:
                kinds = [(e["kind"], e["stage"]) for e in events[job_id]]
                stages = [s for k, s in kinds if k == "progress"]
                assert stages[:2] == ["image_loaded", "features"] and stages[-1] == "ranked", kinds
                assert len(stages) == 3 + len(rows[job_id]["categories"]), kinds
            first = min(e["created_at"].timestamp() for j in ids for e in events[j] if e["kind"] == "claimed")
            last = max(r["finished_at"].timestamp() for r in rows.values())
            total, count = _write_seconds(metrics_dir)
            per_worker = len(ids) / (last - first) / len(WORKER_HOSTS)
            figures[label] = (total / count, per_worker)
            print(f"[faults] latency {label}: per-step write {total / count * 1000:.1f} ms over {count} steps, "
                  f"{per_worker:.2f} jobs/s per worker ({len(ids)} jobs on {len(WORKER_HOSTS)} hosts)")
    finally:
        proxy.stop()
        cluster.stop_workers()
        cluster.start_workers()

    slow_write, _ = figures[f"{DELAY * 1000:.0f} ms"]
    assert slow_write >= 2 * DELAY  # the forwarder really was in the path (a write is one round trip)


# Run inside a host: one blocking pop on the worker's kind of Redis connection (no socket timeout) and
# one long statement on a Postgres connection made like the processes' own; print how long each took
# to fail once the host is cut off.
_SILENT_PEER = """
import sys, threading, time
import sqlalchemy as sa
from searchjobs.db.engine import make_engine
from searchjobs.queue import connect

redis_url, database_url = sys.argv[1:3]

def pop():
    r = connect(redis_url, socket_timeout=None)
    r.ping()
    print("ready redis", flush=True)
    try:
        r.blpop("searchjobs:test:never", timeout=0)
    except Exception as exc:
        print("failed redis", type(exc).__name__, time.time(), flush=True)

def query():
    engine = make_engine(database_url, pool_size=1)
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT 1"))
        print("ready postgres", flush=True)
        try:
            conn.execute(sa.text("SELECT pg_sleep(600)"))
        except Exception as exc:
            print("failed postgres", type(exc).__name__, time.time(), flush=True)

threads = [threading.Thread(target=f) for f in (pop, query)]
for t in threads:
    t.start()
for t in threads:
    t.join()
"""


def test_a_silently_dead_peer_is_noticed_in_seconds(cluster):
    """Keepalives and TCP_USER_TIMEOUT: a cut link breaks idle and blocked connections in seconds."""
    h3 = cluster.net["h3"]
    proc = h3.popen([sys.executable, "-c", _SILENT_PEER, cluster.stack.valkey.url, cluster.stack.postgres.url],
                    cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        ready = {proc.stdout.readline().split()[-1] for _ in range(2)}
        assert ready == {"redis", "postgres"}, ready
        h3.cut()
        cut = time.time()
        failed = {line[1]: (line[2], float(line[3]) - cut)
                  for line in (proc.stdout.readline().split() for _ in range(2))}
    finally:
        h3.heal()
        proc.wait(10)
        proc.stdout.close()
    for server, (error, seconds) in sorted(failed.items()):
        record(f"silent peer: blocked {server} connection broken ({error})", seconds)
    assert set(failed) == {"redis", "postgres"}
    assert all(seconds < 20 for _, seconds in failed.values())  # not the kernel's ~15 minutes
