# ruff: noqa: E402, I001
"""HTTP: the app under gunicorn as the Procfile runs it, against its own hello-world route.

    python bench/http.py [--duration 10] [--connections 8] [--cold-jobs 60000] [--client auto|wrk|python]
                         [--profile] [--workers 2] [--worker-class gthread|sync|gevent] [--threads N]

gunicorn --config python:searchjobs.web.gunicorn_conf with WEB_CONCURRENCY=2 (gthread, 16 threads
each, as configured; --workers, --worker-class and --threads try other settings), app = bench.http_app:create() (create_app() plus /bench/hello). Load from
wrk (-t2 -c8, keep-alive; Debian: apt-get install wrk) when installed, else a Python keep-alive client with one thread per
connection (much weaker: on 2 cores it competes with the server, so absolute numbers drop).

Scenarios, each for --duration seconds:
  hello       GET /bench/hello                               (baseline)
  cache_read  GET /api/search-jobs/<id>, the view in Redis     (X-Cache: hit)
  db_read     GET /api/search-jobs/<id> over --cold-jobs distinct ids after FLUSHALL: every request
              misses Redis, reads Postgres and refills the cache   (X-Cache: miss)
  submit      POST /api/search-jobs JSON {image_url, categories} (row + event + enqueue + cache; no
              worker runs, no image is fetched)
Per scenario: req/s, p50/p99, non-2xx, and Redis commands / Postgres statements per request
(INFO commandstats and pg_stat_statements deltas). The product's rate limiter (web/limits.py) stays
on with limits too high to refuse anything (its Redis counting is a real per-request cost);
--rate-limits off measures without it. A scenario with >1% non-2xx answers is marked INVALID.
"""

from __future__ import annotations

import sys  # noqa: I001 - the path fix must come first: bench/http.py would shadow the stdlib `http`
from pathlib import Path

_BENCH = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _BENCH]
sys.path.insert(0, str(_BENCH.parent))

import argparse
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.common import (  # noqa: E402
    ROOT, RESULTS_DIR, Servers, commands_delta, log, pct, redis_commandstats, summary_line, table, write_results,
)

SUBMIT_BODY = json.dumps({"image_url": "https://images.example.com/photo.jpg", "categories": ["dress", "top"]})
HIGH_LIMIT = "100000000/minute"  # rate limits stay on (their Redis counting is part of a request) but never refuse
LIMITS_ENV = {"SEARCHJOBS_RATE_LIMIT_KEYED": HIGH_LIMIT, "SEARCHJOBS_RATE_LIMIT_ANONYMOUS": HIGH_LIMIT,
              "SEARCHJOBS_RATE_LIMIT_KEYED_READS": HIGH_LIMIT, "SEARCHJOBS_RATE_LIMIT_ANONYMOUS_READS": HIGH_LIMIT}
CATALOG_ROWS = 3000  # catalog rows (categories only) so the submit's category check reads a real-sized table


def free_port() -> int:
    from searchjobs.embedded import free_port as fp

    return fp()


# -- data ---------------------------------------------------------------------

def prepare_data(servers: Servers, cold_jobs: int) -> str:
    """Catalog categories, one cached job, `cold_jobs` jobs only in Postgres. Returns the cached job id."""
    import psycopg2

    from searchjobs.catalog.demo import DEMO_CATEGORIES
    from searchjobs.service import submit

    servers.truncate_jobs()
    conn = psycopg2.connect(servers.database_url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("TRUNCATE catalog_items CASCADE")  # and their vectors (catalog_embeddings)
        cur.execute(
            "INSERT INTO catalog_items (sku, name, category, price) "
            "SELECT 'SKU-' || g, 'Item ' || g, (%s::text[])[1 + g %% %s], 10 + g %% 90 FROM generate_series(1, %s) g",
            (list(DEMO_CATEGORIES), len(DEMO_CATEGORIES), CATALOG_ROWS))
        cur.execute(
            "INSERT INTO search_jobs (job_id, status, progress, stage, categories, original_image_url, "
            "result_token_hash, version) "
            "SELECT 'cold-' || g, 'pending', 0, 'queued', ARRAY['dress','top'], 'https://images.example.com/p.jpg', "
            "md5('cold' || g), 1 FROM generate_series(0, %s - 1) g", (cold_jobs,))
        cur.execute("ANALYZE search_jobs; ANALYZE catalog_items")
    conn.close()
    rt = servers.runtime()
    job = submit(rt, categories=["dress", "top"], image=None, image_url="https://images.example.com/photo.jpg",
                 phone_number=None, country_code=None, client_id=None, idempotency_key=None, request_hash=None)
    rt.close()
    return job.row["job_id"]


# -- load generators -----------------------------------------------------------

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s|m)$", text.strip())
    return float(m.group(1)) * _UNITS[m.group(2)] if m else float("nan")


def run_wrk(base: str, path: str, seconds: float, connections: int, *, script: str | None = None) -> dict:
    threads = min(2, connections)
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency"]
    tmp = None
    if script:
        tmp = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
        tmp.write(script)
        tmp.close()
        cmd += ["-s", tmp.name]
    cmd.append(base + path)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60).stdout
    if tmp:
        os.unlink(tmp.name)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    latency = dict(re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", out, re.M))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {"rps": rps, "p50_ms": _ms(latency.get("50", "")), "p99_ms": _ms(latency.get("99", "")),
            "requests": total, "non_2xx": int(non2xx.group(1)) if non2xx else 0,
            "socket_errors": errors.group(1) if errors else None, "client": "wrk"}


def run_python(host: str, port: int, seconds: float, connections: int, method: str, paths, body: str | None) -> dict:
    """Keep-alive HTTP/1.1 client, one thread per connection. `paths` is a callable i -> path."""
    latencies: list[list[float]] = [[] for _ in range(connections)]
    statuses: list[dict] = [{} for _ in range(connections)]
    counter = iter(range(10**9))
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds
    headers = {"Content-Type": "application/json"} if body else {}

    def worker(k: int) -> None:
        conn = http.client.HTTPConnection(host, port, timeout=10)
        while time.perf_counter() < deadline:
            with lock:
                i = next(counter)
            t = time.perf_counter()
            conn.request(method, paths(i), body=body, headers=headers)
            resp = conn.getresponse()
            resp.read()
            latencies[k].append((time.perf_counter() - t) * 1000)
            statuses[k][resp.status] = statuses[k].get(resp.status, 0) + 1
        conn.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    flat = [x for lat in latencies for x in lat]
    non2xx = sum(n for st in statuses for code, n in st.items() if not 200 <= code < 300)
    return {"rps": len(flat) / elapsed, "p50_ms": pct(flat, 50), "p99_ms": pct(flat, 99), "requests": len(flat),
            "non_2xx": non2xx, "client": "python"}


COLD_SCRIPT = """
local counter = 0
tid = 0
local next_tid = 0
function setup(thread)
  thread:set("tid", next_tid)
  next_tid = next_tid + 1
end
function request()
  local n = (counter * %(threads)d + tid) %% %(jobs)d
  counter = counter + 1
  return wrk.format("GET", "/api/search-jobs/cold-" .. n)
end
"""

SUBMIT_SCRIPT = """
wrk.method = "POST"
wrk.body = '%s'
wrk.headers["Content-Type"] = "application/json"
"""


# -- gunicorn ------------------------------------------------------------------

def app_env(rate_limits: str) -> dict:
    return {**LIMITS_ENV, "SEARCHJOBS_RATE_LIMITS": rate_limits}


def start_gunicorn(servers: Servers, port: int, log_path: Path, rate_limits: str, *, workers: int = 2,
                   worker_class: str | None = None, threads: int | None = None) -> subprocess.Popen:
    """gunicorn as the Procfile runs it; `worker_class` / `threads` (None: the config's) as the lever runs try."""
    env = servers.env(WEB_CONCURRENCY=workers, HOST="127.0.0.1", PORT=port,
                      PUBLIC_BASE_URL=f"http://127.0.0.1:{port}", **app_env(rate_limits))
    levers = []  # gunicorn's command line overrides its config file
    if worker_class:
        levers += ["--worker-class", worker_class]
    if threads:
        levers += ["--threads", str(threads)]
    handle = open(log_path, "wb")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "--config", "python:searchjobs.web.gunicorn_conf",
                             *levers, "bench.http_app:create()"], cwd=ROOT, env=env, stdout=handle, stderr=handle)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/bench/hello")
            if conn.getresponse().status == 200:
                conn.close()
                return proc
        except OSError:
            time.sleep(0.2)
        if proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited; see {log_path}")
    raise RuntimeError("gunicorn did not answer within 60s")


# -- in-process profile ----------------------------------------------------------

def profile_inprocess(servers: Servers, job_id: str, n: int, rate_limits: str) -> dict:
    """Per-request server CPU (Flask test client, no sockets to the client) and a cProfile per scenario."""
    import cProfile
    import io
    import pstats

    from searchjobs.web import create_app

    rt = servers.runtime(**app_env(rate_limits))
    app = create_app(runtime=rt)
    client = app.test_client()
    scenarios = {
        "cache_read": lambda i: client.get(f"/api/search-jobs/{job_id}"),
        "db_read": lambda i: client.get(f"/api/search-jobs/cold-{i}"),
        "submit": lambda i: client.post("/api/search-jobs", data=SUBMIT_BODY, content_type="application/json"),
    }
    from searchjobs.jobs import store as job_queries

    rt.redis.flushall()
    with rt.db.connect() as conn:
        rt.cache.write_row(job_queries.get(conn, job_id))
    out, text = {}, []
    for name, call in scenarios.items():
        for i in range(50):
            call(10**6 + i)  # warm (distinct cold ids)
        prof = cProfile.Profile()
        t = time.perf_counter()
        prof.enable()
        for i in range(n):
            call(i)
        prof.disable()
        out[name] = (time.perf_counter() - t) * 1000 / n
        stream = io.StringIO()
        pstats.Stats(prof, stream=stream).sort_stats("cumulative").print_stats(35)
        text.append(f"===== {name}: {n} requests, {out[name]:.3f} ms/request under cProfile\n{stream.getvalue()}")
    (RESULTS_DIR / "http-profile.txt").write_text("\n".join(text))
    rt.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--cold-jobs", type=int, default=60000, help="distinct job ids for the DB-path read")
    parser.add_argument("--client", choices=["auto", "wrk", "python"], default="auto")
    parser.add_argument("--workers", type=int, default=2, help="WEB_CONCURRENCY (gunicorn processes)")
    parser.add_argument("--worker-class", choices=["gthread", "sync", "gevent"], default=None,
                        help="gunicorn --worker-class (default: the config's, gthread); gevent needs gevent and "
                             "psycogreen installed (bench/http_app.py then makes psycopg2 cooperative)")
    parser.add_argument("--threads", type=int, default=None, help="gunicorn --threads (gthread; default: the config's WEB_THREADS, 16)")
    parser.add_argument("--profile", action="store_true", help="also cProfile the app in-process per scenario")
    parser.add_argument("--rate-limits", choices=["on", "off"], default="on",
                        help="on: the product's limiter counts every /api request in Redis (limits set so high "
                             "nothing is refused); off: SEARCHJOBS_RATE_LIMITS=off")
    args = parser.parse_args()
    client = args.client if args.client != "auto" else ("wrk" if shutil.which("wrk") else "python")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    results: dict[str, dict] = {}
    with Servers() as servers:
        durability = servers.durability()
        log("preparing data")
        job_id = prepare_data(servers, args.cold_jobs)
        proc = start_gunicorn(servers, port, RESULTS_DIR / "http-gunicorn.log", args.rate_limits,
                              workers=args.workers, worker_class=args.worker_class, threads=args.threads)
        r = servers.redis()
        try:
            def load(name: str, path: str, *, method: str = "GET", cold: bool = False, seconds=None) -> dict:
                seconds = seconds or args.duration
                if client == "wrk":
                    script = None
                    if cold:
                        script = COLD_SCRIPT % {"threads": min(2, args.connections), "jobs": args.cold_jobs}
                    elif method == "POST":
                        script = SUBMIT_SCRIPT % SUBMIT_BODY
                    return run_wrk(base, path, seconds, args.connections, script=script)
                paths = (lambda i: f"/api/search-jobs/cold-{i % args.cold_jobs}") if cold else (lambda i: path)
                return run_python("127.0.0.1", port, seconds, args.connections, method, paths,
                                  SUBMIT_BODY if method == "POST" else None)

            log(f"warm-up ({client})")
            load("hello", "/bench/hello", seconds=2)
            load("cache_read", f"/api/search-jobs/{job_id}", seconds=2)
            plan = [("hello", "/bench/hello", "GET", False), ("cache_read", f"/api/search-jobs/{job_id}", "GET", False),
                    ("db_read", "/api/search-jobs/cold-0", "GET", True), ("submit", "/api/search-jobs", "POST", False)]
            for name, path, method, cold in plan:
                if cold:
                    r.flushall()
                before = redis_commandstats(r)
                servers.pg_stat_reset()
                log(f"{name}: {method} {path} for {args.duration}s")
                res = load(name, path, method=method, cold=cold)
                cmds = commands_delta(before, redis_commandstats(r))
                stmts = servers.pg_stat_top(10)
                n = max(res["requests"], 1)
                res["redis_cmds_per_req"] = sum(cmds.values()) / n
                res["redis_cmds"] = {k: round(v / n, 2) for k, v in cmds.items()}
                res["pg_statements_per_req"] = sum(s["calls"] for s in stmts) / n
                res["pg_statements"] = [{**s, "per_req": s["calls"] / n} for s in stmts]
                if cold and res["requests"] > args.cold_jobs:
                    res["warning"] = "more requests than distinct ids: some reads were cache hits"
                results[name] = res
                log(f"  -> {res['rps']:.0f} req/s p50 {res['p50_ms']:.2f} ms p99 {res['p99_ms']:.2f} ms "
                    f"non-2xx {res['non_2xx']}")
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
            r.close()
        inproc = profile_inprocess(servers, job_id, 2000, args.rate_limits) if args.profile else None

    hello = results["hello"]["rps"]
    targets = {"cache_read": (0.50, 5.0), "db_read": (0.35, 10.0), "submit": (0.15, None)}
    rows = []
    for name, res in results.items():
        ratio = res["rps"] / hello
        target = targets.get(name)
        if res["non_2xx"] > 0.01 * res["requests"]:
            ok = "INVALID (non-2xx)"
        else:
            ok = "-" if target is None else ("yes" if ratio >= target[0] and (target[1] is None or res["p99_ms"] <= target[1])
                                              else "NO")
        rows.append([name, res["rps"], ratio, res["p50_ms"], res["p99_ms"], res["non_2xx"], res["redis_cmds_per_req"],
                     res["pg_statements_per_req"],
                     "-" if target is None else f">={target[0]:.2f}" + (f", p99<={target[1]:.0f}ms" if target[1] else ""),
                     ok])
    print()
    table(["scenario", "req/s", "vs hello", "p50 ms", "p99 ms", "non-2xx", "redis cmds/req", "pg stmts/req",
           "target", "met"], rows,
          title=f"HTTP, gunicorn {args.worker_class or 'gthread'} WEB_CONCURRENCY={args.workers}"
                f"{f' WEB_THREADS={args.threads}' if args.threads else ''}, {client} {args.connections} connections, "
                f"{args.duration:.0f}s each, rate limits {args.rate_limits} (2 shared cores: client, server, Postgres, Valkey)")
    for name in ("db_read", "submit"):
        print()
        table(["calls/req", "mean ms", "statement"],
              [[s["per_req"], s["mean_ms"], s["query"][:95]] for s in results[name]["pg_statements"]],
              title=f"Postgres statements per request: {name}")
    if inproc:
        print()
        table(["scenario", "ms/request in-process (cProfile on)"], [[k, v] for k, v in inproc.items()],
              title="Server-side cost per request (Flask test client); profiles in bench/results/http-profile.txt")
    summary = {
        "cache_vs_hello": results["cache_read"]["rps"] / hello, "db_vs_hello": results["db_read"]["rps"] / hello,
        "submit_vs_hello": results["submit"]["rps"] / hello, "cache_p99_ms": results["cache_read"]["p99_ms"],
        "db_p99_ms": results["db_read"]["p99_ms"], "hello_rps": hello, "client": client,
        "rate_limits": args.rate_limits, "worker_class": args.worker_class or "gthread", "workers": args.workers,
        "threads": args.threads,
    }
    write_results("http" if args.rate_limits == "on" else "http-ratelimits-off", {"args": vars(args), "durability": durability, "results": results,
                           "inprocess_ms": inproc, "summary": summary})
    print(summary_line("http", summary))


if __name__ == "__main__":
    main()
