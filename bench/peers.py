# ruff: noqa: E402, I001
"""The peers, side by side (issue 13): the same durable workload on the same PostgreSQL and Valkey.

    python bench/peers.py [--jobs 1000] [--workers 1,2] [--repeat 3] [--latency-jobs 60]
                          [--systems ours,procrastinate,celery,naive_rq,dramatiq]

Every job persists 8 durable commits to its own Postgres row (synchronous_commit on), the last one
storing the result (bench/peer_tasks.py); each system runs it with 1 and 2 worker processes:
- ours: jobs created by searchjobs.service.submit (tiny PNG upload: image + job row + event in one
  transaction, enqueue, cache write), run by `python -m searchjobs worker` with the search replaced by
  bench.trivial_backend (SEARCHJOBS_SEARCH_BACKEND): claim, image_loaded, features, 3 x searched,
  ranked, complete = 8 version-checked, fenced statements with their events and cache views;
- procrastinate: `procrastinate worker --concurrency 1` (Postgres is its queue);
- celery: Redis broker, `-P solo -c 1`, no result backend (the result is in Postgres);
- naive_rq: RQ SimpleWorker, the issue's naive loop (10 UPDATE + commit and 10 HSET);
- dramatiq: Redis broker, `--processes 1 --threads 1`.

Per system and worker count, one run is:
1. backlog: --jobs jobs submitted (row + enqueue), then the workers start; jobs/s =
   jobs / (last finished_at - first started_at) from the rows (worker start-up is not counted);
2. latency: with the workers idle, --latency-jobs jobs submitted one at a time, spaced to a third of
   the rate the backlog phase measured (at least 50 ms apart), so jobs do not queue behind each other;
   p50/p99 of finished_at - submitted time, from the rows.
Ratios (ours / peer) are taken within each repetition, at the same worker count, then the median of
the repetitions is printed: the machine is shared, absolute numbers drift between runs.
"""

from __future__ import annotations

import sys  # noqa: I001 - the path fix must come first: bench/http.py would shadow the stdlib `http`
from pathlib import Path

_BENCH = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _BENCH]
sys.path.insert(0, str(_BENCH.parent))

import argparse
import io
import os
import signal
import subprocess
import time

from bench.common import ROOT, RESULTS_DIR, Servers, log, median, pct, summary_line, table, write_results

SYSTEMS = ["ours", "procrastinate", "celery", "naive_rq", "dramatiq"]
CATEGORIES = ["dress", "top", "shoes"]  # 3 categories -> 8 persisted steps per job
TRIVIAL_BACKEND = "bench.trivial_backend:factory"
LATENCY_INTERVAL = 0.05  # seconds, at least, between latency-phase submissions (a third of the rate, at most)
PHASE_TIMEOUT = 600  # seconds a phase may take
WORKER_LOG = RESULTS_DIR / "peers-workers.log"
BIN = Path(sys.executable).parent


def tiny_png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 30, 60)).save(buf, "PNG")
    return buf.getvalue()


class Peer:
    """A peer system: submits job ids to its broker and runs `count` worker processes."""

    name = ""

    def __init__(self, servers: Servers):
        self.servers = servers
        import psycopg2

        self.conn = psycopg2.connect(servers.database_url)
        self.conn.autocommit = True

    def reset(self) -> None:
        with self.conn.cursor() as cur:
            cur.execute("TRUNCATE bench_peer_jobs")

    def insert_row(self, job_id: int) -> None:
        with self.conn.cursor() as cur:
            cur.execute("INSERT INTO bench_peer_jobs (id, system) VALUES (%s, %s)", (job_id, self.name))

    def submit(self, job_id: int) -> None:
        self.insert_row(job_id)
        self.enqueue(job_id)

    def enqueue(self, job_id: int) -> None:
        raise NotImplementedError

    def command(self, index: int) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict:
        return self.servers.env()

    def finished(self) -> int:
        with self.conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM bench_peer_jobs WHERE finished_at IS NOT NULL")
            return cur.fetchone()[0]

    def window(self, first_id: int, last_id: int) -> float:
        with self.conn.cursor() as cur:
            cur.execute("SELECT extract(epoch FROM max(finished_at) - min(started_at)) FROM bench_peer_jobs "
                        "WHERE id BETWEEN %s AND %s", (first_id, last_id))
            return float(cur.fetchone()[0])

    def latencies(self, first_id: int, last_id: int) -> list[float]:
        with self.conn.cursor() as cur:
            cur.execute("SELECT extract(epoch FROM finished_at - submitted_at) * 1000 FROM bench_peer_jobs "
                        "WHERE id BETWEEN %s AND %s", (first_id, last_id))
            return [float(r[0]) for r in cur.fetchall()]

    def close(self) -> None:
        self.conn.close()


class Ours(Peer):
    name = "ours"

    def __init__(self, servers: Servers):
        super().__init__(servers)
        from searchjobs import intake

        self.runtime = servers.runtime()
        self.image = intake.validate_image_bytes(tiny_png(), "image/png", intake.IntakeLimits())
        self.ids: dict[int, str] = {}

    def reset(self) -> None:
        self.servers.truncate_jobs()
        self.ids.clear()

    def submit(self, job_id: int) -> None:
        from searchjobs.service import submit

        made = submit(self.runtime, categories=CATEGORIES, image=self.image, image_url=None, phone_number=None,
                      country_code=None, client_id=None, idempotency_key=None, request_hash=None)
        self.ids[job_id] = made.row["job_id"]

    def command(self, index: int) -> list[str]:
        return [sys.executable, "-m", "searchjobs", "worker"]

    def env(self) -> dict:
        return self.servers.env(SEARCHJOBS_SEARCH_BACKEND=TRIVIAL_BACKEND, SEARCHJOBS_PROGRESS_COMMIT="durable")

    def _ours(self, first_id: int, last_id: int) -> list[str]:
        return [self.ids[i] for i in range(first_id, last_id + 1)]

    def finished(self) -> int:
        with self.conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM search_jobs WHERE status = 'completed'")
            return cur.fetchone()[0]

    def window(self, first_id: int, last_id: int) -> float:
        with self.conn.cursor() as cur:
            cur.execute("SELECT extract(epoch FROM max(finished_at) - min(started_at)) FROM search_jobs "
                        "WHERE job_id = ANY(%s)", (self._ours(first_id, last_id),))
            return float(cur.fetchone()[0])

    def latencies(self, first_id: int, last_id: int) -> list[float]:
        with self.conn.cursor() as cur:
            cur.execute("SELECT extract(epoch FROM finished_at - created_at) * 1000 FROM search_jobs "
                        "WHERE job_id = ANY(%s)", (self._ours(first_id, last_id),))
            return [float(r[0]) for r in cur.fetchall()]

    def close(self) -> None:
        self.runtime.close()
        super().close()


class Procrastinate(Peer):
    name = "procrastinate"

    def __init__(self, servers: Servers):
        super().__init__(servers)
        from bench import peer_procrastinate

        self.app = peer_procrastinate.app
        self.task = peer_procrastinate.peer_steps
        self.app.open()

    def reset(self) -> None:
        super().reset()
        with self.conn.cursor() as cur:
            cur.execute("TRUNCATE procrastinate_jobs CASCADE")

    def enqueue(self, job_id: int) -> None:
        self.task.defer(job_id=job_id)

    def command(self, index: int) -> list[str]:
        return [str(BIN / "procrastinate"), "--app=bench.peer_procrastinate.app", "worker", "--concurrency", "1",
                "--name", f"peer{index}"]

    def close(self) -> None:
        self.app.close()
        super().close()


class CeleryPeer(Peer):
    name = "celery"

    def __init__(self, servers: Servers):
        super().__init__(servers)
        from bench import peer_celery

        self.task = peer_celery.peer_steps

    def enqueue(self, job_id: int) -> None:
        self.task.apply_async((job_id,))

    def command(self, index: int) -> list[str]:
        return [sys.executable, "-m", "celery", "-A", "bench.peer_celery", "worker", "-P", "solo", "-c", "1",
                "-n", f"peer{index}@%h", "-l", "WARNING"]


class NaiveRQ(Peer):
    name = "naive_rq"

    def __init__(self, servers: Servers):
        super().__init__(servers)
        from rq import Queue

        self.redis = servers.redis()
        self.queue = Queue("bench", connection=self.redis)

    def enqueue(self, job_id: int) -> None:
        self.queue.enqueue("bench.peer_tasks.naive_rq", job_id)

    def command(self, index: int) -> list[str]:
        return [str(BIN / "rq"), "worker", "--url", self.servers.redis_url, "-w", "rq.worker.SimpleWorker",
                "-q", "bench"]

    def close(self) -> None:
        self.redis.close()
        super().close()


class Dramatiq(Peer):
    name = "dramatiq"

    def __init__(self, servers: Servers):
        super().__init__(servers)
        from bench import peer_dramatiq

        self.actor = peer_dramatiq.peer_steps

    def enqueue(self, job_id: int) -> None:
        self.actor.send(job_id)

    def command(self, index: int) -> list[str]:
        return [sys.executable, "-m", "dramatiq", "bench.peer_dramatiq", "--processes", "1", "--threads", "1"]


PEERS = {"ours": Ours, "procrastinate": Procrastinate, "celery": CeleryPeer, "naive_rq": NaiveRQ,
         "dramatiq": Dramatiq}


def prepare(servers: Servers, systems: list[str]) -> None:
    """The peers' table, procrastinate's schema, and the URLs the peers' modules read at import."""
    import psycopg2

    from bench.peer_tasks import TABLE

    os.environ.update({"DATABASE_URL": servers.database_url, "REDIS_URL": servers.redis_url})
    conn = psycopg2.connect(servers.database_url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(TABLE)
        cur.execute("SELECT to_regclass('procrastinate_jobs') IS NOT NULL")
        has_procrastinate = cur.fetchone()[0]
    conn.close()
    if "procrastinate" in systems and not has_procrastinate:
        subprocess.run([str(BIN / "procrastinate"), "--app=bench.peer_procrastinate.app", "schema", "--apply"],
                       cwd=ROOT, env=servers.env(), check=True, capture_output=True)


def wait_for(peer: Peer, count: int, what: str) -> None:
    deadline = time.monotonic() + PHASE_TIMEOUT
    while peer.finished() < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{peer.name}: {what} timed out at {peer.finished()} of {count}; see {WORKER_LOG}")
        time.sleep(0.05)


def stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def run(servers: Servers, system: str, n: int, workers: int, latency_jobs: int) -> dict:
    peer = PEERS[system](servers)
    redis = servers.redis()
    try:
        peer.reset()
        redis.flushall()
        started = time.perf_counter()
        for job_id in range(1, n + 1):
            peer.submit(job_id)
        submit_rate = n / (time.perf_counter() - started)
        handle = open(WORKER_LOG, "ab")  # noqa: SIM115 - closed below
        procs = [subprocess.Popen(peer.command(i), cwd=ROOT, env=peer.env(), stdout=handle, stderr=handle)
                 for i in range(workers)]
        try:
            wait_for(peer, n, "backlog")
            window = peer.window(1, n)
            interval = max(LATENCY_INTERVAL, 3 * window / n)
            for job_id in range(n + 1, n + latency_jobs + 1):
                peer.submit(job_id)
                time.sleep(interval)
            wait_for(peer, n + latency_jobs, "latency phase")
            latencies = peer.latencies(n + 1, n + latency_jobs)
        finally:
            stop(procs)
            handle.close()
        dead = [p.returncode for p in procs if p.returncode not in (0, -signal.SIGTERM)]
        if dead:
            log(f"  {system}: worker exit codes {dead} (after SIGTERM)")
        return {"system": system, "workers": workers, "jobs": n, "jobs_s": n / window, "window_s": window,
                "submit_jobs_s": submit_rate, "latency_p50_ms": pct(latencies, 50),
                "latency_p99_ms": pct(latencies, 99), "latency_n": len(latencies), "latency_interval_s": interval}
    finally:
        redis.close()
        peer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    parser.add_argument("--repeat", type=int, default=3, help="runs per system and worker count; medians reported")
    parser.add_argument("--latency-jobs", type=int, default=60)
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    args = parser.parse_args()
    counts = [int(x) for x in args.workers.split(",")]
    systems = args.systems.split(",")
    if systems[0] != "ours":
        parser.error("--systems starts with ours (every ratio is ours / peer)")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    WORKER_LOG.write_bytes(b"")

    runs: list[dict] = []
    with Servers(pg_stat_statements=False) as servers:
        durability = servers.durability()
        prepare(servers, systems)
        for rep in range(args.repeat):
            for workers in counts:
                for system in systems:
                    log(f"run {rep + 1}/{args.repeat}: {system} x{workers}, {args.jobs} jobs")
                    result = run(servers, system, args.jobs, workers, args.latency_jobs)
                    result["repeat"] = rep
                    log(f"  -> {result['jobs_s']:.1f} jobs/s, latency p50 {result['latency_p50_ms']:.1f} ms "
                        f"p99 {result['latency_p99_ms']:.1f} ms")
                    runs.append(result)

    def one(system, workers, rep):
        return next(r for r in runs if r["system"] == system and r["workers"] == workers and r["repeat"] == rep)

    def med(system, workers, key="jobs_s"):
        return median([r[key] for r in runs if r["system"] == system and r["workers"] == workers])

    def ratio(system, workers):  # ours / peer within each repetition, then the median
        return median([one("ours", workers, rep)["jobs_s"] / one(system, workers, rep)["jobs_s"]
                       for rep in range(args.repeat)])

    rows = []
    for workers in counts:
        for system in systems:
            rows.append([system, workers, med(system, workers), ratio(system, workers) if system != "ours" else 1.0,
                         med(system, workers, "latency_p50_ms"), med(system, workers, "latency_p99_ms"),
                         med(system, workers, "submit_jobs_s")])
    print()
    table(["system", "workers", "jobs/s", "ours / it", "latency p50 ms", "p99 ms", "submit jobs/s"], rows,
          title=f"Peers: {args.jobs} jobs of 8 durable commits each, median of {args.repeat} "
                f"(latency: {args.latency_jobs} jobs at a third of each one's rate)")
    summary = {}
    for workers in counts:
        suffix = "" if workers == counts[0] else f"_w{workers}"
        for system in systems[1:]:
            summary[f"ours_vs_{system}{suffix}"] = ratio(system, workers)
    for workers in counts:
        suffix = "" if workers == counts[0] else f"_w{workers}"
        summary[f"ours_jobs_s{suffix}"] = med("ours", workers)
    write_results("peers", {"args": vars(args), "durability": durability, "runs": runs, "summary": summary})
    print(summary_line("peers", summary))


if __name__ == "__main__":
    main()
