# ruff: noqa: E402, I001
"""Scale: status read and progress write cost at 10k / 100k / 1M jobs, and cleanup of expired jobs.

    python bench/scale.py [--sizes 10000,100000,1000000] [--events-per-job 8] [--cleanup 100000] [--samples 2000]
                          [--queued 100000]

Rows are bulk-inserted with generate_series (jobs completed over the last days, `events-per-job`
events each, small results; the load session uses synchronous_commit=off, the measurements
the server's durable defaults). At each size, after ANALYZE:
  - status read: `job_queries.get` (one primary-key-like lookup on job_id) and the API's read
    path `cache.read_through` with an empty Redis (HGET miss + SELECT + cache refill);
  - events read: `job_queries.events` for one job;
  - progress write: `job_queries.progress` (UPDATE + event INSERT CTE) on 200 processing jobs;
all on random jobs, p50/p99; then the scheduler's reconciler pass (`reconcile`) with min(size, --queued)
jobs queued (pending, due): its time and Redis commands (INFO commandstats delta) when Redis lost its
data (every job enqueued again), in the steady state (every pointer present, twice: the changed jobs
and one rotating page) and at a new scheduler's first pass (every pointer checked). Then `--cleanup` jobs are made 30 days old and
`searchjobs.worker.cleanup.cleanup` runs (batches of defaults.CLEANUP_BATCH) while a thread keeps
doing progress writes and status reads: duration, longest batch (= the longest time row locks
are held) and the worst concurrent write/read latency.
"""

from __future__ import annotations

import sys  # noqa: I001 - the path fix must come first: bench/http.py would shadow the stdlib `http`
from pathlib import Path

_BENCH = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _BENCH]
sys.path.insert(0, str(_BENCH.parent))

import argparse
import random
import sys
import threading
import time
from pathlib import Path

from bench.common import (  # noqa: E402
    Servers, commands_delta, log, pct, redis_commandstats, summary_line, table, write_results,
)

CHUNK = 100_000  # jobs per bulk INSERT
PROCESSING = 200  # jobs in `processing` for the progress writes


def bulk_insert(servers: Servers, start: int, stop: int, events_per_job: int) -> float:
    import psycopg2

    conn = psycopg2.connect(servers.database_url)
    conn.autocommit = True
    began = time.perf_counter()
    with conn.cursor() as cur:
        cur.execute("SET synchronous_commit = off")
        cur.execute("SET maintenance_work_mem = '256MB'")
        for lo in range(start, stop, CHUNK):
            hi = min(stop, lo + CHUNK)
            cur.execute(
                """
                INSERT INTO search_jobs (job_id, status, progress, stage, categories, original_image_url,
                    result_token_hash, version, attempts, worker_name, results, created_at, updated_at,
                    started_at, finished_at)
                SELECT 'j' || g, 'completed', 100, 'done', ARRAY['dress','top','shoes'],
                       'https://images.example.com/' || g || '.jpg', md5('t' || g), %(ev)s, 1, 'bench',
                       '{"categories": {"dress": [], "top": [], "shoes": []}, "took_ms": 12.5}'::jsonb,
                       ts, ts, ts, ts + interval '1 second'
                  FROM (SELECT g, now() - (random() * interval '6 days') AS ts
                          FROM generate_series(%(lo)s, %(hi)s - 1) g) s
                """, {"lo": lo, "hi": hi, "ev": events_per_job})
            if events_per_job:
                cur.execute(
                    """
                    INSERT INTO search_job_events (job_id, kind, status, progress, stage, version, attempt, detail)
                    SELECT 'j' || g, CASE k WHEN 1 THEN 'created' WHEN %(ev)s THEN 'completed' ELSE 'progress' END,
                           CASE k WHEN 1 THEN 'pending' WHEN %(ev)s THEN 'completed' ELSE 'processing' END,
                           least(100, k * 12), 'stage' || k, k, 1, '{}'::jsonb
                      FROM generate_series(%(lo)s, %(hi)s - 1) g, generate_series(1, %(ev)s) k
                    """, {"lo": lo, "hi": hi, "ev": events_per_job})
            log(f"  inserted jobs {lo:,}..{hi:,}")
        cur.execute("VACUUM ANALYZE search_jobs")
        cur.execute("VACUUM ANALYZE search_job_events")
    conn.close()
    return time.perf_counter() - began


def set_processing(servers: Servers, size: int, low: int = 0) -> list[list]:
    import psycopg2

    conn = psycopg2.connect(servers.database_url)
    conn.autocommit = True
    ids = [f"j{i}" for i in random.sample(range(low, size), min(PROCESSING, size - low))]
    with conn.cursor() as cur:
        cur.execute("UPDATE search_jobs SET status = 'completed' WHERE status = 'processing'")
        cur.execute("UPDATE search_jobs SET status = 'processing', lease_expires_at = now() + interval '1 hour', "
                    "claim_token = gen_random_uuid() WHERE job_id = ANY(%s) RETURNING job_id, version, claim_token",
                    (ids,))
        rows = [list(r) for r in cur.fetchall()]
    conn.close()
    return rows


def measure(servers: Servers, rt, size: int, samples: int) -> dict:
    from searchjobs.jobs.cache import read_through
    from searchjobs.jobs import store as job_queries

    processing = set_processing(servers, size)
    rt.redis.flushall()
    ids = [f"j{random.randrange(size)}" for _ in range(samples)]
    out = {}

    def timed(label, func, args_list):
        times = []
        for a in args_list:
            t = time.perf_counter()
            func(a)
            times.append((time.perf_counter() - t) * 1000)
        out[label] = {"p50_ms": pct(times, 50), "p99_ms": pct(times, 99), "n": len(times)}

    def get(job_id):
        with rt.db.connect() as conn:
            assert job_queries.get(conn, job_id) is not None

    def events(job_id):
        with rt.db.connect() as conn:
            job_queries.events(conn, job_id)

    def read(job_id):
        view, source = read_through(rt.cache, rt.db, job_id)
        assert view is not None

    def progress(i):
        job = processing[i % len(processing)]
        with rt.db.connect() as conn:
            row = job_queries.progress(conn, job[0], job[2], job[1], 50, "bench", 20, {"i": i})
        job[1] = row["version"]

    timed("status_get", get, ids)
    timed("status_read_through_miss", read, [f"j{random.randrange(size)}" for _ in range(samples)])
    timed("events_read", events, ids[: samples // 2])
    timed("progress_write", progress, range(samples))
    import psycopg2

    conn = psycopg2.connect(servers.database_url)
    with conn.cursor() as cur:
        cur.execute("SELECT pg_total_relation_size('search_jobs'), pg_total_relation_size('search_job_events')")
        jobs_bytes, events_bytes = cur.fetchone()
        cur.execute("EXPLAIN " + job_queries._GET.text.replace(":job_id", "'j1'"))
        plan = " / ".join(r[0].strip() for r in cur.fetchall())
    conn.close()
    out.update({"jobs_mb": jobs_bytes / 2**20, "events_mb": events_bytes / 2**20, "get_plan": plan})
    return out


def cleanup_phase(servers: Servers, rt, size: int, count: int, samples_thread: bool = True) -> dict:
    import psycopg2

    from searchjobs.jobs import store as job_queries
    from searchjobs.worker.cleanup import cleanup

    count = min(count, size - PROCESSING)
    conn = psycopg2.connect(servers.database_url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("UPDATE search_jobs SET status = 'completed' WHERE status = 'processing'")
        cur.execute("UPDATE search_jobs SET created_at = now() - interval '30 days' "
                    "WHERE id IN (SELECT id FROM search_jobs ORDER BY id LIMIT %s)", (count,))
        cur.execute("VACUUM ANALYZE search_jobs")
        cur.execute("SELECT count(*) FROM search_job_events")
        events_before = cur.fetchone()[0]
    processing = set_processing(servers, size, low=count)  # live jobs, none of them expired
    concurrent: dict[str, list[float]] = {"progress_write": [], "status_get": []}
    stop = threading.Event()

    def background():
        i = 0
        while not stop.is_set():
            job = processing[i % len(processing)]
            t = time.perf_counter()
            with rt.db.connect() as c:
                row = job_queries.progress(c, job[0], job[2], job[1], 50, "bench", 20, {})
            concurrent["progress_write"].append((time.perf_counter() - t) * 1000)
            if row:
                job[1] = row["version"]
            t = time.perf_counter()
            with rt.db.connect() as c:
                job_queries.get(c, f"j{random.randrange(count, size)}")
            concurrent["status_get"].append((time.perf_counter() - t) * 1000)
            i += 1
            time.sleep(0.002)

    started = time.perf_counter()
    dry = cleanup(rt, retention_days=7, dry_run=True)
    count_ms = (time.perf_counter() - started) * 1000
    thread = threading.Thread(target=background, daemon=True)
    thread.start()
    started = time.perf_counter()
    report = cleanup(rt, retention_days=7)
    duration = time.perf_counter() - started
    stop.set()
    thread.join()
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM search_job_events")
        events_after = cur.fetchone()[0]
    conn.close()
    return {
        "expired_jobs": dry.jobs, "deleted_jobs": report.jobs, "deleted_events": events_before - events_after,
        "batches": report.batches, "duration_s": duration, "jobs_per_s": report.jobs / duration,
        "longest_batch_ms": report.longest_batch_ms, "count_query_ms": count_ms,
        "concurrent": {k: {"n": len(v), "p50_ms": pct(v, 50), "p99_ms": pct(v, 99), "max_ms": max(v) if v else None}
                       for k, v in concurrent.items()},
    }


def reconciler_phase(servers: Servers, rt, queued: int, samples: int = 50) -> tuple[list[dict], dict]:
    """One reconciler pass with `queued` due pending jobs: after Redis lost its data, then steady (twice), then
    a new scheduler's first pass (a sweep, Redis kept its data). Then the steady pass's first query alone
    (`pending_due_since`: the due pending jobs changed since the last pass; none here), `samples` times."""
    import psycopg2

    from searchjobs import defaults
    from searchjobs.db.engine import database_now
    from searchjobs.jobs import store as job_queries
    from searchjobs.worker.reconciler import RECONCILE_BATCH, ReconcilerState, reconcile

    conn = psycopg2.connect(servers.database_url)
    conn.autocommit = True
    with conn.cursor() as cur:  # queued long enough ago that no grace applies; changed an hour ago
        cur.execute("UPDATE search_jobs SET status = 'pending', stage = 'queued', progress = 0, results = NULL, "
                    "finished_at = NULL, run_after = NULL, updated_at = now() - interval '1 hour' "
                    "WHERE id IN (SELECT id FROM search_jobs WHERE status = 'completed' ORDER BY id LIMIT %s)",
                    (queued,))
        cur.execute("ANALYZE search_jobs")
    rt.redis.flushall()
    state, passes = ReconcilerState(), []
    for label in ("Redis lost its data: all enqueued", "steady: every pointer present", "steady, again",
                  "a new scheduler: every pointer checked"):
        if label.startswith("a new scheduler"):
            state = ReconcilerState()  # a restarted scheduler's first pass sweeps, Redis kept its data
        before = redis_commandstats(rt.redis)
        started = time.perf_counter()
        report = reconcile(rt, state=state)
        elapsed = time.perf_counter() - started
        commands = commands_delta(before, redis_commandstats(rt.redis))
        commands.pop("info", None)
        passes.append({"pass": label, "queued": queued, "ms": elapsed * 1000, "requeued": len(report.requeued),
                       "views": report.views_repaired, "redis_cmds": sum(commands.values()),
                       "top_cmds": dict(list(commands.items())[:6]),
                       "redis_used_mb": rt.redis.info("memory")["used_memory"] / 2**20})
        log(f"  reconciler, {queued:,} queued, {label}: {elapsed * 1000:.0f} ms, {len(report.requeued):,} enqueued, "
            f"{sum(commands.values()):,} Redis commands")
    timings = []
    with rt.db.connect() as db_conn:
        since = database_now(db_conn)
        for _ in range(samples):
            started = time.perf_counter()
            job_queries.pending_due_since(db_conn, since, defaults.PENDING_GRACE_SECONDS, RECONCILE_BATCH)
            timings.append((time.perf_counter() - started) * 1000)
    changed_query = {"p50_ms": pct(timings, 50), "p99_ms": pct(timings, 99), "n": len(timings)}
    log(f"  pending_due_since, {queued:,} queued: p50 {changed_query['p50_ms']:.2f} ms")
    with conn.cursor() as cur:  # back as they were, for the next size and the cleanup
        cur.execute("UPDATE search_jobs SET status = 'completed', stage = 'done', progress = 100, "
                    "finished_at = updated_at + interval '1 second' WHERE status = 'pending'")
    conn.close()
    rt.redis.flushall()
    return passes, changed_query


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--events-per-job", type=int, default=8)
    parser.add_argument("--cleanup", type=int, default=100_000, help="expired jobs the cleanup deletes")
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--queued", type=int, default=100_000, help="pending jobs in the reconciler's pass")
    args = parser.parse_args()
    sizes = sorted(int(x) for x in args.sizes.split(","))
    random.seed(1)
    results, rows = [], []
    with Servers(pg_stat_statements=False) as servers:
        durability = servers.durability()
        servers.truncate_jobs()
        rt = servers.runtime()
        have = 0
        for size in sizes:
            log(f"size {size:,}: inserting {size - have:,} jobs x {args.events_per_job} events")
            load_s = bulk_insert(servers, have, size, args.events_per_job)
            have = size
            log(f"size {size:,}: loaded in {load_s:.1f}s; measuring")
            m = measure(servers, rt, size, args.samples)
            m.update({"size": size, "load_s": load_s})
            m["reconciler"], m["pending_due_since"] = reconciler_phase(servers, rt, min(size - PROCESSING, args.queued))
            results.append(m)
            rows.append([size, m["status_get"]["p50_ms"], m["status_get"]["p99_ms"],
                         m["status_read_through_miss"]["p50_ms"], m["status_read_through_miss"]["p99_ms"],
                         m["events_read"]["p50_ms"], m["progress_write"]["p50_ms"], m["progress_write"]["p99_ms"],
                         m["jobs_mb"], m["events_mb"]])
        log(f"cleanup of {min(args.cleanup, sizes[-1] - PROCESSING):,} expired jobs out of {sizes[-1]:,}")
        clean = cleanup_phase(servers, rt, sizes[-1], args.cleanup)
        rt.close()
    print()
    table(["jobs", "get p50", "get p99", "read-through miss p50", "p99", "events p50", "progress p50",
           "progress p99", "jobs MB", "events MB"], rows,
          title=f"Status read / progress write vs. table size (ms; {args.events_per_job} events per job; "
                f"durable settings)")
    print()
    table(["jobs", "queued", "reconciler pass", "ms", "enqueued", "Redis commands", "top commands", "Redis MB"],
          [[m["size"], p["queued"], p["pass"], p["ms"], p["requeued"], p["redis_cmds"],
            " ".join(f"{k}:{v}" for k, v in p["top_cmds"].items()), p["redis_used_mb"]]
           for m in results for p in m["reconciler"]],
          title="The scheduler's reconciler pass with queued jobs (time, Redis commands per pass)")
    print()
    table(["cleanup", "value"], [
        ["expired jobs deleted", clean["deleted_jobs"]], ["events deleted (cascade)", clean["deleted_events"]],
        ["batches", clean["batches"]], ["duration s", clean["duration_s"]], ["jobs/s", clean["jobs_per_s"]],
        ["longest batch (lock held) ms", clean["longest_batch_ms"]], ["count query ms", clean["count_query_ms"]],
        ["concurrent progress write p99 / max ms",
         f"{clean['concurrent']['progress_write']['p99_ms']:.2f} / {clean['concurrent']['progress_write']['max_ms']:.2f}"],
        ["concurrent status get p99 / max ms",
         f"{clean['concurrent']['status_get']['p99_ms']:.2f} / {clean['concurrent']['status_get']['max_ms']:.2f}"],
    ], title=f"Cleanup at {sizes[-1]:,} jobs (scheduler.cleanup, batch {__import__('searchjobs.defaults').defaults.CLEANUP_BATCH})")
    first, last = results[0], results[-1]
    summary = {
        "get_p50_ms_small": first["status_get"]["p50_ms"], "get_p50_ms_large": last["status_get"]["p50_ms"],
        "progress_p50_ms_small": first["progress_write"]["p50_ms"],
        "progress_p50_ms_large": last["progress_write"]["p50_ms"],
        "read_growth": last["status_get"]["p50_ms"] / first["status_get"]["p50_ms"],
        "write_growth": last["progress_write"]["p50_ms"] / first["progress_write"]["p50_ms"],
        "cleanup_s": clean["duration_s"], "cleanup_longest_batch_ms": clean["longest_batch_ms"],
        "largest": sizes[-1],
        "reconcile_lost_ms_large": last["reconciler"][0]["ms"],
        "reconcile_steady_ms_large": last["reconciler"][1]["ms"],
        "reconcile_steady_cmds_large": last["reconciler"][1]["redis_cmds"],
        "reconcile_steady_ms_small": first["reconciler"][1]["ms"],
        "pending_due_since_p50_ms_large": last["pending_due_since"]["p50_ms"],
    }
    write_results("scale", {"args": vars(args), "durability": durability, "sizes": results, "cleanup": clean,
                            "summary": summary})
    print(summary_line("scale", summary))


if __name__ == "__main__":
    main()
