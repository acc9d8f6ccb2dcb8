"""Celery (Redis broker, no result backend: the task stores its result in Postgres) for bench/peers.py.

    celery -A bench.peer_celery worker -P solo -c 1
"""

from __future__ import annotations

import os

from celery import Celery

from bench.peer_tasks import durable_steps

app = Celery("bench_peers", broker=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
app.conf.update(task_ignore_result=True, worker_hijack_root_logger=False, broker_connection_retry_on_startup=True)


@app.task(name="peer_steps")
def peer_steps(job_id: int) -> None:
    durable_steps(job_id)
