"""The peers' job for bench/peers.py: the same durable work for every system, on its own Postgres row.

A job makes STEPS autocommit UPDATEs of its row in `bench_peer_jobs` (each one a durable commit:
synchronous_commit on, as the product runs), the last one storing the result and `finished_at`;
the first also sets `started_at`. That is the shape of ours: claim, 6 progress steps and complete
are 8 durable commits, the last carrying the results. One psycopg2 connection per worker process.

The naive RQ loop is the issue's: 10 UPDATE + commit and 10 HSET, the last UPDATE storing the result.
"""

from __future__ import annotations

import json
import os

STEPS = 8  # durable commits per job, as ours makes (claim + 6 progress + complete)
NAIVE_STEPS = 10  # the naive RQ loop of issue 13
RESULT = json.dumps({"hits": [{"sku": f"BENCH-{i:03d}", "score": round(1 - i / 100, 4)} for i in range(12)]})

TABLE = """
CREATE TABLE IF NOT EXISTS bench_peer_jobs (
    id bigint PRIMARY KEY,
    system text NOT NULL,
    step int NOT NULL DEFAULT 0,
    result jsonb,
    submitted_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    started_at timestamptz,
    finished_at timestamptz
)
"""
_STEP = ("UPDATE bench_peer_jobs SET step = %s, started_at = coalesce(started_at, clock_timestamp()) "
         "WHERE id = %s")
_LAST = "UPDATE bench_peer_jobs SET step = %s, result = %s, finished_at = clock_timestamp() WHERE id = %s"

_conn = None
_redis = None


def connection():
    """This process's Postgres connection (autocommit: every statement is its own durable commit)."""
    global _conn
    if _conn is None or _conn.closed:
        import psycopg2

        _conn = psycopg2.connect(os.environ["DATABASE_URL"])
        _conn.autocommit = True
    return _conn


def durable_steps(job_id: int, steps: int = STEPS, hset=None) -> None:
    with connection().cursor() as cur:
        for step in range(1, steps + 1):
            if step < steps:
                cur.execute(_STEP, (step, job_id))
            else:
                cur.execute(_LAST, (step, RESULT, job_id))
            if hset is not None:
                hset(step)


def naive_rq(job_id: int) -> str:
    """RQ's job: 10 UPDATE + commit and 10 HSET of a progress hash, as the issue's naive loop."""
    from rq import get_current_job

    redis = get_current_job().connection
    key = f"bench:peer:{job_id}"
    durable_steps(job_id, NAIVE_STEPS, hset=lambda step: redis.hset(key, "step", step))
    return "done"
