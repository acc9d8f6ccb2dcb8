"""What the system holds right now, read from Redis and Postgres when asked.

Gauges that describe shared state (queue depth, workers alive, jobs waiting,
the SMS outbox) are not recorded by any process but computed when /metrics is
scraped (LiveStateCollector), so they are right whichever machine the workers
run on.
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from prometheus_client.core import GaugeMetricFamily

from searchjobs.jobs.store import unfinished_summary
from searchjobs.notifications import outbox
from searchjobs.queue import REDIS_UNAVAILABLE, queue_overview, worker_overview

log = logging.getLogger(__name__)


class LiveStateCollector:
    """Gauges computed when scraped, from Redis (RQ's queues and workers) and Postgres.

    A dependency that is down shows as searchjobs_redis_up / searchjobs_postgres_up 0
    instead of failing the whole scrape.
    """

    def __init__(self, redis_connection, engine: sa.Engine):
        self.redis = redis_connection
        self.engine = engine

    def collect(self):
        yield from self._redis()
        yield from self._postgres()

    def _redis(self):
        up = GaugeMetricFamily("searchjobs_redis_up", "1 if Redis answered this scrape.")
        try:
            queues = queue_overview(self.redis)
            workers = worker_overview(self.redis)
        except REDIS_UNAVAILABLE as exc:
            log.warning("metrics: Redis unavailable (%s)", type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        depth = GaugeMetricFamily("searchjobs_queue_depth", "RQ jobs waiting in each queue.", labels=["queue"])
        oldest = GaugeMetricFamily("searchjobs_queue_oldest_job_age_seconds",
                                   "Age of the oldest RQ job waiting in each queue (0 when empty).", labels=["queue"])
        for q in queues:
            depth.add_metric([q["queue"]], q["depth"])
            oldest.add_metric([q["queue"]], q["oldest_age_s"] or 0)
        yield depth
        yield oldest
        alive = GaugeMetricFamily("searchjobs_workers_alive", "RQ workers registered in Redis, by state.",
                                  labels=["state"])
        states: dict[str, int] = {"idle": 0, "busy": 0}
        for w in workers:
            states[w["state"]] = states.get(w["state"], 0) + 1
        for state, n in sorted(states.items()):
            alive.add_metric([state], n)
        yield alive

    def _postgres(self):
        up = GaugeMetricFamily("searchjobs_postgres_up", "1 if Postgres answered this scrape.")
        try:
            with self.engine.connect() as conn:
                unfinished = unfinished_summary(conn)
                sms = outbox.counts_by_status(conn)
        except sa.exc.DBAPIError as exc:
            log.warning("metrics: database unavailable (%s)", type(exc.orig).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        jobs = GaugeMetricFamily("searchjobs_jobs_unfinished", "Jobs pending or processing (Postgres).",
                                 labels=["status"])
        oldest = GaugeMetricFamily("searchjobs_jobs_unfinished_oldest_age_seconds",
                                   "Age of the oldest pending / processing job (0 when none).", labels=["status"])
        for status, summary in unfinished.items():
            jobs.add_metric([status], summary["count"])
            oldest.add_metric([status], summary["oldest_age_s"] or 0)
        yield jobs
        yield oldest
        outbox_gauge = GaugeMetricFamily("searchjobs_sms_outbox", "SMS outbox rows by status (Postgres).",
                                         labels=["status"])
        for status, n in sorted(sms.items()):
            outbox_gauge.add_metric([status], n)
        yield outbox_gauge
