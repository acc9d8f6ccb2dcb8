"""procrastinate (Postgres is its queue) for bench/peers.py.

    procrastinate --app=bench.peer_procrastinate.app worker --concurrency 1
"""

from __future__ import annotations

import os

import procrastinate

from bench.peer_tasks import durable_steps

app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=os.environ.get("DATABASE_URL", "")))


@app.task(name="peer_steps")
def peer_steps(job_id: int) -> None:
    durable_steps(job_id)
