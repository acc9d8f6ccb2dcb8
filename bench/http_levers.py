# ruff: noqa: E402, I001
"""What one API request costs in round trips, in-process (issue 13's two HTTP levers).

    python bench/http_levers.py [--requests 2000] [--repeat 3]

The product app (create_app, rate limits on with limits too high to refuse, as bench/http.py runs it)
behind Flask's test client, so only the server's work is measured: for a cached status read
(GET /api/search-jobs/<id>, the view in Redis) anonymous and with an API key (Authorization: Bearer,
the job owned by that key), GET /api/categories and the submit page `/` (3,000 catalog items), per request: ms, Redis round trips (each send to Redis: a pipeline is
one), Redis commands (INFO commandstats) and Postgres statements (pg_stat_statements).
"""

from __future__ import annotations

import sys  # noqa: I001 - the path fix must come first: bench/http.py would shadow the stdlib `http`
from pathlib import Path

_BENCH = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _BENCH]
sys.path.insert(0, str(_BENCH.parent))

import argparse
import time

from bench.common import Servers, commands_delta, log, median, redis_commandstats, summary_line, table, write_results

HIGH_LIMIT = "100000000/minute"
CATALOG_ROWS = 3000  # as bench/http.py: the categories' GROUP BY reads a real-sized table
LIMITS_ENV = {"SEARCHJOBS_RATE_LIMITS": "on", "SEARCHJOBS_RATE_LIMIT_KEYED": HIGH_LIMIT,
              "SEARCHJOBS_RATE_LIMIT_ANONYMOUS": HIGH_LIMIT, "SEARCHJOBS_RATE_LIMIT_KEYED_READS": HIGH_LIMIT,
              "SEARCHJOBS_RATE_LIMIT_ANONYMOUS_READS": HIGH_LIMIT}


class RoundTrips:
    """Counts sends to Redis (one per command, one per pipeline) by wrapping redis-py's connection."""

    def __init__(self):
        import redis.connection

        self.count = 0
        self._cls = redis.connection.AbstractConnection
        self._original = self._cls.send_packed_command
        counter = self

        def counted(conn, command, check_health=True):
            counter.count += 1
            return counter._original(conn, command, check_health)

        self._cls.send_packed_command = counted

    def close(self):
        self._cls.send_packed_command = self._original


def fill_catalog(servers: Servers) -> None:
    """CATALOG_ROWS items over the demo categories (no images: only the categories are read here)."""
    import psycopg2

    from searchjobs.catalog.demo import DEMO_CATEGORIES

    conn = psycopg2.connect(servers.database_url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("TRUNCATE catalog_items CASCADE")
        cur.execute(
            "INSERT INTO catalog_items (sku, name, category, price) "
            "SELECT 'SKU-' || g, 'Item ' || g, (%s::text[])[1 + g %% %s], 10 + g %% 90 FROM generate_series(1, %s) g",
            (list(DEMO_CATEGORIES), len(DEMO_CATEGORIES), CATALOG_ROWS))
        cur.execute("ANALYZE catalog_items")
    conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    from searchjobs import clients
    from searchjobs.service import submit
    from searchjobs.web import create_app

    runs = []
    with Servers() as servers:
        servers.truncate_jobs()
        fill_catalog(servers)
        rt = servers.runtime(**LIMITS_ENV)
        with rt.engine.begin() as conn:
            client_row, key = clients.create(conn, "bench")
        anonymous = submit(rt, categories=["dress"], image=None, image_url="https://images.example.com/a.jpg",
                           phone_number=None, country_code=None, client_id=None, idempotency_key=None,
                           request_hash=None).row["job_id"]
        keyed = submit(rt, categories=["dress"], image=None, image_url="https://images.example.com/b.jpg",
                       phone_number=None, country_code=None, client_id=client_row["id"], idempotency_key=None,
                       request_hash=None).row["job_id"]
        app = create_app(runtime=rt)
        web = app.test_client()
        scenarios = {
            "cached read, anonymous": (f"/api/search-jobs/{anonymous}", {}),
            "cached read, API key": (f"/api/search-jobs/{keyed}", {"Authorization": f"Bearer {key}"}),
            "GET /api/categories": ("/api/categories", {}),
            "GET / (submit page)": ("/", {}),
        }
        r = servers.redis()
        for rep in range(args.repeat):
            for name, (path, headers) in scenarios.items():
                for _ in range(50):  # warm: pools, the cached view, the key cache
                    assert web.get(path, headers=headers).status_code == 200
                before = redis_commandstats(r)
                servers.pg_stat_reset()
                trips = RoundTrips()
                started = time.perf_counter()
                misses = 0
                try:
                    for _ in range(args.requests):
                        response = web.get(path, headers=headers)
                        assert response.status_code == 200, response.get_data(as_text=True)
                        # an unfinished job's view lives one lease: a long run meets a refill now and then
                        misses += response.headers.get("X-Cache") != "hit"
                finally:
                    trips.close()
                elapsed = time.perf_counter() - started
                n = args.requests
                statements = servers.pg_stat_top(10)
                commands = commands_delta(before, redis_commandstats(r))
                commands.pop("info", None)
                runs.append({"scenario": name, "repeat": rep, "ms_per_request": elapsed * 1000 / n,
                             "redis_round_trips": trips.count / n, "redis_cmds": sum(commands.values()) / n,
                             "redis_by_command": {k: round(v / n, 2) for k, v in commands.items()},
                             "pg_statements": sum(s["calls"] for s in statements) / n, "cache_misses": misses,
                             "pg_by_statement": [{**s, "per_req": s["calls"] / n} for s in statements]})
                log(f"{name}: {runs[-1]['ms_per_request']:.3f} ms, {runs[-1]['redis_round_trips']:.2f} Redis round "
                    f"trips, {runs[-1]['pg_statements']:.3f} Postgres statements per request")
        r.close()
        rt.close()

    def med(name, key):
        return median([run[key] for run in runs if run["scenario"] == name])

    print()
    table(["request", "ms (in-process)", "Redis round trips", "Redis cmds", "Postgres statements"],
          [[name, med(name, "ms_per_request"), med(name, "redis_round_trips"), med(name, "redis_cmds"),
            med(name, "pg_statements")] for name in scenarios],
          title=f"Per request, {args.requests} requests, median of {args.repeat} (rate limits on)")
    summary = {}
    for name, short in (("cached read, anonymous", "anonymous"), ("cached read, API key", "keyed")):
        summary[f"{short}_ms"] = med(name, "ms_per_request")
        summary[f"{short}_redis_trips"] = med(name, "redis_round_trips")
        summary[f"{short}_pg_stmts"] = med(name, "pg_statements")
    write_results("http_levers", {"args": vars(args), "runs": runs, "summary": summary})
    print(summary_line("http_levers", summary))


if __name__ == "__main__":
    main()
