# ruff: noqa: E402, I001
"""End-to-end jobs/s: our durable worker vs. bare RQ (SimpleWorker and the forking Worker), same Redis.

    python bench/throughput.py [--jobs 2000] [--workers 1,2] [--repeat 1] [--steps-jobs 300]
                               [--sync-off] [--profile]

What runs:
- ours: N jobs created as the API creates them (searchjobs.service.submit with a tiny
  uploaded PNG: image row + job row + 'created' event in one transaction, enqueue, cache write),
  then `python -m searchjobs worker --burst` processes (1 and 2) with the search stage replaced by
  bench.trivial_backend (fixed hits, no catalog). Each job still does: claim, load the image from
  Postgres, decode + describe it, 6 progress steps (image_loaded, features, 3 categories, ranked)
  and complete = 8 version-checked statements with their events, each followed by the cache
  EVALSHA (+PUBLISH).
- bare RQ: N no-op jobs (bench.noop.noop) with `rq worker --burst -w rq.worker.SimpleWorker` and
  with RQ's default `rq.worker.Worker` (fork per job), same worker counts, same Redis.
- --sync-off: ours again with intermediate progress steps committed with
  SET LOCAL synchronous_commit = off (the product's SEARCHJOBS_PROGRESS_COMMIT=fast; a trade-off).

jobs/s = N / (last job finished - first job started): for ours from the rows' started_at /
finished_at, for bare RQ from the RQ job hashes' started_at / ended_at (process start-up is not
counted for either). Per-step latency comes from an in-process run (SimpleWorker in this
process, the same code) timing each `job_queries.progress` call; Redis commands per job from
INFO commandstats deltas over the worker phase; Postgres statements per job from pg_stat_statements.
"""

from __future__ import annotations

import sys  # noqa: I001 - the path fix must come first: bench/http.py would shadow the stdlib `http`
from pathlib import Path

_BENCH = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _BENCH]
sys.path.insert(0, str(_BENCH.parent))

import argparse
import cProfile
import io
import pstats
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from bench.common import (  # noqa: E402
    ROOT, RESULTS_DIR, Servers, commands_delta, log, median, pct, redis_commandstats, summary_line, table,
    write_results,
)

CATEGORIES = ["dress", "top", "shoes"]  # 3 categories -> 8 persisted steps per job
TRIVIAL_BACKEND = "bench.trivial_backend:factory"
WORKER_TIMEOUT = 600  # seconds one worker phase may take


def tiny_png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 30, 60)).save(buf, "PNG")
    return buf.getvalue()


def submit_jobs(servers: Servers, n: int) -> float:
    """Create n jobs exactly as POST /api/search-jobs does (after parsing). Returns jobs/s of submission."""
    from searchjobs import intake
    from searchjobs.service import submit

    rt = servers.runtime()
    image = intake.validate_image_bytes(tiny_png(), "image/png", intake.IntakeLimits())
    started = time.perf_counter()
    for _ in range(n):
        submit(rt, categories=CATEGORIES, image=image, image_url=None, phone_number=None, country_code=None,
               client_id=None, idempotency_key=None, request_hash=None)
    elapsed = time.perf_counter() - started
    rt.close()
    return n / elapsed


def _start_workers(cmd: list[str], count: int, env: dict, log_path: Path) -> list[subprocess.Popen]:
    handle = open(log_path, "ab")  # noqa: SIM115 - closed with the processes
    return [subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=handle, stderr=handle) for _ in range(count)]


def _wait(procs: list[subprocess.Popen]) -> float:
    started = time.monotonic()
    for p in procs:
        try:
            p.wait(timeout=max(1, WORKER_TIMEOUT - (time.monotonic() - started)))
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise RuntimeError("worker phase timed out") from None
    bad = [p.returncode for p in procs if p.returncode != 0]
    if bad:
        raise RuntimeError(f"worker exited with {bad}; see bench/results/throughput-workers.log")
    return time.monotonic() - started


def run_ours(servers: Servers, n: int, workers: int, *, sync_off: bool = False) -> dict:
    r = servers.redis()
    servers.truncate_jobs()
    r.flushall()
    submit_rate = submit_jobs(servers, n)
    before = redis_commandstats(r)
    servers.pg_stat_reset()
    wal_before = servers.pg_wal()
    cmd = [sys.executable, "-m", "searchjobs", "worker", "--burst"]
    env = servers.env(SEARCHJOBS_SEARCH_BACKEND=TRIVIAL_BACKEND,
                      SEARCHJOBS_PROGRESS_COMMIT="fast" if sync_off else "durable")
    wall = _wait(_start_workers(cmd, workers, env, RESULTS_DIR / "throughput-workers.log"))
    commands = commands_delta(before, redis_commandstats(r))
    wal_after = servers.pg_wal()
    statements = servers.pg_stat_top(12)
    import psycopg2

    conn = psycopg2.connect(servers.database_url)
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FILTER (WHERE status = 'completed'), count(*), "
                    "extract(epoch FROM max(finished_at) - min(started_at)) FROM search_jobs")
        completed, total, window = cur.fetchone()
        cur.execute("SELECT count(*) FROM search_job_events")
        events = cur.fetchone()[0]
    conn.close()
    r.close()
    if completed != n:
        raise RuntimeError(f"only {completed} of {total} jobs completed")
    return {
        "kind": "ours-sync-off" if sync_off else "ours", "workers": workers, "jobs": n,
        "jobs_s": n / float(window), "window_s": float(window), "wall_s": wall, "submit_jobs_s": submit_rate,
        "events_per_job": events / n, "redis_cmds_per_job": sum(commands.values()) / n,
        # INFO commandstats also counts the commands run inside our Lua script (HGET, HSET, EXPIRE,
        # PUBLISH per written EVALSHA); they are not round trips: subtract them for commands clients send
        "redis_client_cmds_per_job": (sum(commands.values()) - 4 * commands.get("evalsha", 0)) / n,
        "redis_cmds": {k: round(v / n, 2) for k, v in commands.items()},
        "pg_statements_per_job": sum(s["calls"] for s in statements) / n if statements else None,
        "pg_statements": statements,
        "wal_fsyncs_per_job": (wal_after.get("wal_fsyncs", 0) - wal_before.get("wal_fsyncs", 0)) / n,
        "wal_bytes_per_job": (wal_after.get("wal_bytes", 0) - wal_before.get("wal_bytes", 0)) / n,
    }


def _rq_time(raw: bytes | None) -> datetime | None:
    if not raw:
        return None
    return datetime.strptime(raw.decode(), "%Y-%m-%dT%H:%M:%S.%fZ")


def run_bare(servers: Servers, n: int, workers: int, worker_class: str) -> dict:
    from rq import Queue

    r = servers.redis()
    r.flushall()
    queue = Queue("bench", connection=r)
    ids = [f"noop-{i}" for i in range(n)]
    for job_id in ids:
        queue.enqueue("bench.noop.noop", job_id=job_id)
    before = redis_commandstats(r)
    rq_bin = str(Path(sys.executable).parent / "rq")
    cmd = [rq_bin, "worker", "--burst", "--url", servers.redis_url, "-w", worker_class, "bench"]
    wall = _wait(_start_workers(cmd, workers, servers.env(), RESULTS_DIR / "throughput-workers.log"))
    commands = commands_delta(before, redis_commandstats(r))
    pipe = r.pipeline(transaction=False)
    for job_id in ids:
        pipe.hmget(f"rq:job:{job_id}", "started_at", "ended_at", "status")
    rows = pipe.execute()
    r.close()
    done = [(_rq_time(s), _rq_time(e)) for s, e, st in rows if st == b"finished"]
    if len(done) != n:
        raise RuntimeError(f"only {len(done)} of {n} bare jobs finished")
    window = (max(e for _, e in done) - min(s for s, _ in done)).total_seconds()
    kind = "rq-simple" if worker_class.endswith("SimpleWorker") else "rq-fork"
    return {"kind": kind, "workers": workers, "jobs": n, "jobs_s": n / window, "window_s": window, "wall_s": wall,
            "redis_cmds_per_job": sum(commands.values()) / n,
            "redis_client_cmds_per_job": sum(commands.values()) / n,
            "redis_cmds": {k: round(v / n, 2) for k, v in commands.items()}}


def inprocess_steps(servers: Servers, n: int, *, sync_off: bool = False, profile: bool = False) -> dict:
    """Run n jobs with our SearchWorker in this process, timing each persisted step and each part of a job.

    With profile=True the same run is under cProfile (which inflates Python-side costs): use the
    timings of a run without it.
    """
    from searchjobs.jobs.cache import JobCache
    from searchjobs.catalog import descriptor
    from searchjobs.jobs import lifecycle, search
    from searchjobs.jobs import store as job_queries
    from searchjobs.worker.worker import run_worker

    r = servers.redis()
    servers.truncate_jobs()
    r.flushall()
    r.close()
    submit_jobs(servers, n)
    rt = servers.runtime(SEARCHJOBS_SEARCH_BACKEND=TRIVIAL_BACKEND,
                         SEARCHJOBS_PROGRESS_COMMIT="fast" if sync_off else "durable")
    names = ["claim", "progress", "complete", "db_step_with_checkout", "cache_write", "load_query_image",
             "describe", "job_function"]
    timings: dict[str, list[float]] = {name: [] for name in names}
    patches = [(job_queries, "claim", "claim"), (job_queries, "progress", "progress"),
               (job_queries, "complete", "complete"), (lifecycle, "_with_db_retry", "db_step_with_checkout"),
               (JobCache, "write", "cache_write"), (search, "load_query_image", "load_query_image"),
               (descriptor, "analyse", "describe"), (search, "run", "job_function")]
    originals = [(owner, attr, getattr(owner, attr)) for owner, attr, _ in patches]

    def timed(name, func):
        def wrapper(*args, **kwargs):
            t = time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                timings[name].append((time.perf_counter() - t) * 1000)
        return wrapper

    for (owner, attr, name), (_, _, func) in zip(patches, originals, strict=True):
        setattr(owner, attr, timed(name, func))
    profiler = cProfile.Profile() if profile else None
    try:
        started = time.perf_counter()
        if profiler:
            profiler.enable()
        run_worker(rt, burst=True, logging_level="WARNING")
        if profiler:
            profiler.disable()
        elapsed = time.perf_counter() - started
    finally:
        for owner, attr, func in originals:
            setattr(owner, attr, func)
        rt.close()
    import psycopg2

    conn = psycopg2.connect(servers.database_url)
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM search_jobs WHERE status = 'completed'")
        completed = cur.fetchone()[0]
    conn.close()
    if completed != n:  # a job that failed or went back to pending would time nothing of the real path
        raise RuntimeError(f"in-process run: only {completed} of {n} jobs completed")
    out = {"jobs": n, "sync_off": sync_off, "profiled": profile, "jobs_s_inprocess": n / elapsed,
           "per_job_ms": elapsed * 1000 / n}
    for name, values in timings.items():
        out[name] = {"n": len(values), "p50_ms": pct(values, 50), "p99_ms": pct(values, 99),
                     "mean_ms": sum(values) / len(values) if values else None, "per_job_ms": sum(values) / n}
    per = {name: out[name]["per_job_ms"] for name in names}
    statements = per["claim"] + per["progress"] + per["complete"]
    out["breakdown_ms_per_job"] = {
        "RQ (dequeue, job hash bookkeeping, finish)": out["per_job_ms"] - per["job_function"],
        "SQL statements (claim + 6 progress + complete)": statements,
        "pool checkout/return around them (incl. isolation reset)": per["db_step_with_checkout"] - statements,
        "cache writes in line (EVALSHA + view JSON; steps go behind)": per["cache_write"],
        "load image (SELECT images + validate + decode)": per["load_query_image"],
        "describe (descriptor.analyse: GrabCut, colours, features)": per["describe"],
        "other (logging, metrics, search stub, results JSON)": per["job_function"] - per["db_step_with_checkout"]
        - per["cache_write"] - per["load_query_image"] - per["describe"],
    }
    if profiler:
        stream = io.StringIO()
        stats = pstats.Stats(profiler, stream=stream)
        stats.sort_stats("tottime").print_stats(30)
        stats.sort_stats("cumulative").print_stats(45)
        profiler.dump_stats(RESULTS_DIR / "throughput-profile.pstats")  # for pstats / snakeviz
        path = RESULTS_DIR / "throughput-profile.txt"
        path.write_text(f"cProfile of {n} jobs in-process (sync_off={sync_off}), {elapsed:.2f}s\n"
                        + stream.getvalue())
        out["profile"] = str(path)
        log(f"profile written to {path}")
    return out


def statement_variants(servers: Servers, n: int = 400) -> list[dict]:
    """One progress step, written the ways it could be, down to the peers' bare UPDATE: latency per call
    and WAL bytes per call. Every round runs each variant once, in a shuffled order, on the next of 50
    processing jobs, so drift of the shared machine falls on all of them alike.

    Evidence for where a durable commit's time goes and what each change would buy (same server, same run).
    """
    import random
    import re

    import psycopg2

    from searchjobs.db import engine as db
    from searchjobs.jobs import store as job_queries

    servers.truncate_jobs()
    submit_jobs(servers, 50)
    raw = psycopg2.connect(servers.database_url)
    raw.autocommit = True
    cur = raw.cursor()
    cur.execute("UPDATE search_jobs SET status = 'processing', claim_token = gen_random_uuid()")
    cur.execute("SELECT job_id, version, claim_token::text FROM search_jobs")
    jobs = [list(r) for r in cur.fetchall()]
    cur.execute("CREATE TABLE IF NOT EXISTS bench_peer_row (id int PRIMARY KEY, step int, started_at timestamptz)")
    cur.execute("INSERT INTO bench_peer_row SELECT g, 0 FROM generate_series(0, 49) g ON CONFLICT DO NOTHING")
    pyformat = re.sub(r"(?<!:):(\w+)", r"%(\1)s", job_queries._PROGRESS.text)
    few_columns = re.sub(r"RETURNING id, .*?claim_token::text AS claim_token",
                         "RETURNING job_id, status, progress, stage, version, attempts, cancel_requested, updated_at",
                         pyformat, flags=re.S)
    fence = ("WHERE job_id = %(job_id)s AND version = %(version)s AND status = 'processing' "
             "AND claim_token = CAST(%(token)s AS uuid) RETURNING version")
    update_alone = ("UPDATE search_jobs SET progress = GREATEST(progress, %(progress)s), stage = %(stage)s, "
                    "updated_at = now(), lease_expires_at = now() + make_interval(secs => %(lease)s), "
                    "version = version + 1 " + fence)
    update_hot = ("UPDATE search_jobs SET progress = GREATEST(progress, %(progress)s), stage = %(stage)s, "
                  "version = version + 1 " + fence)

    def params(job):
        return {"job_id": job[0], "version": job[1], "progress": 50, "stage": "bench", "lease": 20.0, "detail": "{}",
                "token": job[2]}

    def raw_sql(sql, prefix=""):
        def step(i, job):
            cur.execute(prefix + sql, params(job))
            row = cur.fetchone()
            return dict(zip([d[0] for d in cur.description], row, strict=True))["version"]
        return step

    def peer_update(i, job):  # bench/peer_tasks.py's step: the peers' durable commit
        cur.execute("UPDATE bench_peer_row SET step = %s, started_at = coalesce(started_at, clock_timestamp()) "
                    "WHERE id = %s", (job[1], i % 50))
        return job[1]

    product_engine = db.make_engine(servers.database_url, pool_size=1)
    product_db = db.autocommit(product_engine)

    def product(i, job):
        with product_db.connect() as conn:
            return job_queries.progress(conn, job[0], job[2], job[1], 50, "bench", 20, {})["version"]

    def product_cursor(i, job):  # the same statement on the pooled connection's own DBAPI cursor
        with product_db.connect() as conn, conn.connection.dbapi_connection.cursor() as own:
            own.execute(pyformat, params(job))
            return dict(zip([d[0] for d in own.description], own.fetchone(), strict=True))["version"]

    variants = [
        ("as the product: job_queries.progress via SQLAlchemy (pool checkout per step)", product),
        ("same, the DBAPI cursor of the pooled connection (no SQLAlchemy result)", product_cursor),
        ("raw psycopg2, same SQL (row + event CTE, RETURNING 26 columns)", raw_sql(pyformat)),
        ("raw psycopg2, RETURNING 8 columns", raw_sql(few_columns)),
        ("raw psycopg2, the UPDATE alone (no event row)", raw_sql(update_alone)),
        ("raw psycopg2, the UPDATE alone, no indexed column set (HOT)", raw_sql(update_hot)),
        ("the peers' step: UPDATE of a 3-column row", peer_update),
        ("raw psycopg2, SET LOCAL synchronous_commit=off; same SQL", raw_sql(pyformat, "SET LOCAL synchronous_commit = off;")),
    ]
    times: dict[str, list[float]] = {label: [] for label, _ in variants}
    wal: dict[str, float] = {label: 0.0 for label, _ in variants}
    for i in range(n):
        order = list(variants)
        random.shuffle(order)
        for label, step in order:
            job = jobs[i % len(jobs)]
            cur.execute("SELECT pg_current_wal_lsn()")
            lsn = cur.fetchone()[0]
            t = time.perf_counter()
            job[1] = step(i, job)
            times[label].append((time.perf_counter() - t) * 1000)
            cur.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s)", (lsn,))
            wal[label] += float(cur.fetchone()[0])
    out = [{"variant": label, "n": n, "p50_ms": pct(times[label], 50), "p99_ms": pct(times[label], 99),
            "mean_ms": sum(times[label]) / n, "wal_bytes": wal[label] / n} for label, _ in variants]
    times_select: list[float] = []
    for _ in range(n):
        t = time.perf_counter()
        cur.execute("SELECT 1")
        cur.fetchone()
        times_select.append((time.perf_counter() - t) * 1000)
    out.append({"variant": "anchor: SELECT 1 round trip (psycopg2)", "n": n, "p50_ms": pct(times_select, 50),
                "p99_ms": pct(times_select, 99), "mean_ms": sum(times_select) / n, "wal_bytes": 0.0})
    cur.execute("DROP TABLE bench_peer_row")
    raw.close()
    product_db.dispose()
    product_engine.dispose()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    parser.add_argument("--repeat", type=int, default=1, help="runs per configuration; the median is reported")
    parser.add_argument("--steps-jobs", type=int, default=300, help="jobs in the in-process step-latency run")
    parser.add_argument("--sync-off", action="store_true",
                        help="also run ours with SET LOCAL synchronous_commit=off on progress steps")
    parser.add_argument("--profile", action="store_true", help="cProfile the in-process run")
    parser.add_argument("--skip-fork", action="store_true", help="skip RQ's forking Worker (slowest baseline)")
    parser.add_argument("--variant-steps", type=int, default=600, help="rounds of the progress-statement variants")
    args = parser.parse_args()
    counts = [int(x) for x in args.workers.split(",")]
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "throughput-workers.log").write_bytes(b"")

    kinds = ["ours", "rq-simple"] + ([] if args.skip_fork else ["rq-fork"]) + (["ours-sync-off"] if args.sync_off else [])
    runs: list[dict] = []
    with Servers() as servers:
        durability = servers.durability()
        for rep in range(args.repeat):
            for workers in counts:
                for kind in kinds:
                    log(f"run {rep + 1}/{args.repeat}: {kind} x{workers}, {args.jobs} jobs")
                    if kind == "ours":
                        result = run_ours(servers, args.jobs, workers)
                    elif kind == "ours-sync-off":
                        result = run_ours(servers, args.jobs, workers, sync_off=True)
                    elif kind == "rq-simple":
                        result = run_bare(servers, args.jobs, workers, "rq.worker.SimpleWorker")
                    else:
                        result = run_bare(servers, args.jobs, workers, "rq.worker.Worker")
                    result["repeat"] = rep
                    log(f"  -> {result['jobs_s']:.1f} jobs/s (window {result['window_s']:.2f}s, "
                        f"{result['redis_cmds_per_job']:.1f} redis cmds/job)")
                    runs.append(result)
        log(f"in-process step timing: {args.steps_jobs} jobs")
        steps = inprocess_steps(servers, args.steps_jobs)
        steps_off = inprocess_steps(servers, args.steps_jobs, sync_off=True) if args.sync_off else None
        if args.profile:
            log("in-process run under cProfile")
            inprocess_steps(servers, args.steps_jobs, profile=True)
        log("progress statement variants")
        variants = statement_variants(servers, args.variant_steps)

    def med(kind, workers, key="jobs_s"):
        return median([r[key] for r in runs if r["kind"] == kind and r["workers"] == workers and r.get(key) is not None])

    rows, ratios = [], {}
    for workers in counts:
        ours = med("ours", workers)
        simple, fork = med("rq-simple", workers), med("rq-fork", workers)
        ratios[workers] = {"vs_simple": ours / simple, "vs_fork": ours / fork if fork == fork else float("nan")}
        for kind in kinds:
            rows.append([kind, workers, med(kind, workers), med(kind, workers, "redis_cmds_per_job"),
                         med(kind, workers, "redis_client_cmds_per_job"),
                         med(kind, workers, "pg_statements_per_job") if kind.startswith("ours") else float("nan"),
                         med(kind, workers, "wal_fsyncs_per_job") if kind.startswith("ours") else float("nan"),
                         med(kind, workers, "submit_jobs_s") if kind.startswith("ours") else float("nan")])
    print()
    table(["variant", "workers", "jobs/s", "redis cmds/job", "sent by clients", "pg stmts/job", "wal fsyncs/job", "submit jobs/s"],
          rows, title=f"Throughput, {args.jobs} jobs, median of {args.repeat} (2 shared cores; durable settings)")
    print()
    table(["workers", "ours / SimpleWorker (>=0.5)", "ours / fork Worker (>=2)"],
          [[w, v["vs_simple"], v["vs_fork"]] for w, v in ratios.items()], title="Ratios")
    print()
    step_rows = []
    for label, s in (("sync on", steps), ("sync off (progress only)", steps_off)):
        if s is None:
            continue
        for name in ("claim", "progress", "complete", "cache_write"):
            step_rows.append([f"{name} ({label})", s[name]["n"], s[name]["p50_ms"], s[name]["p99_ms"],
                              s[name]["per_job_ms"]])
        step_rows.append([f"whole job in-process ({label})", s["jobs"], float("nan"), float("nan"), s["per_job_ms"]])
    table(["step", "n", "p50 ms", "p99 ms", "ms per job"], step_rows,
          title=f"Per-step persistence latency (in-process SearchWorker, {args.steps_jobs} jobs, 1 worker)")
    print()
    table(["progress step written as", "n", "p50 ms", "p99 ms", "mean ms", "WAL bytes"],
          [[v["variant"], v["n"], v["p50_ms"], v["p99_ms"], v["mean_ms"], v["wal_bytes"]] for v in variants],
          title="One durable step, variants interleaved in shuffled rounds (same server, 50 processing jobs)")
    print()
    labels = list(steps["breakdown_ms_per_job"])
    table(["part of one job (in-process, 1 worker)", "ms/job sync on"] + (["ms/job sync off"] if steps_off else []),
          [[k, steps["breakdown_ms_per_job"][k]] + ([steps_off["breakdown_ms_per_job"][k]] if steps_off else [])
           for k in labels] + [["TOTAL", steps["per_job_ms"]] + ([steps_off["per_job_ms"]] if steps_off else [])],
          title="Where a job's time goes (timers around the product's functions; no profiler)")
    ours_last = next((r for r in reversed(runs) if r["kind"] == "ours"), None)
    if ours_last:
        print()
        table(["redis command", "per job"], [[k, v] for k, v in list(ours_last["redis_cmds"].items())[:15]],
              title=f"Redis commands per job, ours x{ours_last['workers']} (INFO commandstats delta / jobs)")
        if ours_last["pg_statements"]:
            print()
            table(["calls/job", "mean ms", "statement"],
                  [[s["calls"] / ours_last["jobs"], s["mean_ms"], s["query"][:90]] for s in ours_last["pg_statements"]],
                  title="Postgres statements per job, ours (pg_stat_statements)")

    w1 = counts[0]
    summary = {
        "ours_vs_simpleworker": ratios[w1]["vs_simple"], "ours_vs_forkworker": ratios[w1]["vs_fork"],
        "ours_jobs_s": med("ours", w1),
    }
    for w in counts[1:]:
        summary[f"ours_vs_simpleworker_w{w}"] = ratios[w]["vs_simple"]
        summary[f"ours_vs_forkworker_w{w}"] = ratios[w]["vs_fork"]
        summary[f"ours_jobs_s_w{w}"] = med("ours", w)
    summary["step_p50_ms"] = steps["progress"]["p50_ms"]
    summary["step_p99_ms"] = steps["progress"]["p99_ms"]
    summary["redis_cmds_per_job"] = med("ours", w1, "redis_cmds_per_job")
    summary["redis_client_cmds_per_job"] = med("ours", w1, "redis_client_cmds_per_job")
    summary["pg_stmts_per_job"] = med("ours", w1, "pg_statements_per_job")
    if args.sync_off:
        summary["sync_off_jobs_s"] = med("ours-sync-off", w1)
    write_results("throughput", {"args": vars(args), "durability": durability, "runs": runs,
                                 "ratios": {str(k): v for k, v in ratios.items()}, "steps": steps,
                                 "steps_sync_off": steps_off, "statement_variants": variants, "summary": summary})
    print(summary_line("throughput", summary))


if __name__ == "__main__":
    main()
