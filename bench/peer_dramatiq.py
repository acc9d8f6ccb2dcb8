"""Dramatiq (Redis broker, its default middleware) for bench/peers.py.

    dramatiq bench.peer_dramatiq --processes 1 --threads 1
"""

from __future__ import annotations

import os

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from bench.peer_tasks import durable_steps

dramatiq.set_broker(RedisBroker(url=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")))


@dramatiq.actor(actor_name="peer_steps", max_retries=0)
def peer_steps(job_id: int) -> None:
    durable_steps(job_id)
