"""What the system holds right now, read from Redis and Postgres when asked.

Gauges that describe shared state (queue depth, workers alive, jobs waiting,
the SMS outbox) are not recorded by any process but computed when /metrics is
scraped (LiveStateCollector), so they are right whichever machine the workers
run on. The same sources make the report of `searchjobs status` (status_report).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from prometheus_client.core import GaugeMetricFamily

from searchjobs.db.engine import DB_ERRORS, is_outage
from searchjobs.jobs import store as job_queries
from searchjobs.jobs.store import unfinished_summary
from searchjobs.notifications import outbox
from searchjobs.queue import REDIS_UNAVAILABLE, queue_overview, worker_overview

log = logging.getLogger(__name__)

STATUS_STUCK_PENDING = 300  # seconds; a pending job older than this means no worker is taking jobs


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


# -- the report of `searchjobs status` ---------------------------------------------------------------

def status_report(runtime, failed_limit: int = 10) -> dict:
    """What `searchjobs status` shows, as one dict; a part whose server is unreachable is None."""
    now = datetime.now(UTC)
    report = {"checked_at": now.isoformat(), "redis": {"ok": True, "error": None},
              "postgres": {"ok": True, "error": None}, "queues": None, "workers": None, "jobs": None,
              "failed_jobs": None, "sms_outbox": None, "warnings": []}
    try:
        report.update(redis_status(runtime.redis))
    except REDIS_UNAVAILABLE as exc:
        report["redis"] = {"ok": False, "error": first_line(exc)}
    try:
        with runtime.engine.connect() as conn:
            # one part at a time: what was read before an outage is kept
            report.update(job_status(conn, now, failed_limit))
            report.update(outbox_status(conn))
    except DB_ERRORS as exc:
        if not is_outage(exc):
            raise
        report["postgres"] = {"ok": False, "error": first_line(exc)}
    report["warnings"] = status_warnings(report)
    return report


def redis_status(redis_connection) -> dict:
    """RQ's queues and registered workers."""
    return {"queues": queue_overview(redis_connection), "workers": worker_overview(redis_connection)}


def job_status(conn: sa.Connection, now: datetime, failed_limit: int) -> dict:
    """Jobs by status (created in the last hour and day, unfinished now) and the last day's failures."""
    day_ago = now - timedelta(days=1)
    jobs = {
        "last_hour": job_queries.counts_by_status(conn, now - timedelta(hours=1)),
        "last_day": job_queries.counts_by_status(conn, day_ago),
        "unfinished": unfinished_summary(conn),
    }
    failed = job_queries.list_jobs(conn, status="failed", limit=failed_limit, before_id=None,
                                   client_id=None, admin=True)
    failed_jobs = [
        {"job_id": r["job_id"], "error_code": r["error_code"], "error": r["error"],
         "attempts": r["attempts"], "finished_at": r["finished_at"].isoformat() if r["finished_at"] else None}
        for r in failed if r["finished_at"] is None or r["finished_at"] >= day_ago
    ]
    return {"jobs": jobs, "failed_jobs": failed_jobs}


def outbox_status(conn: sa.Connection) -> dict:
    """SMS outbox rows by status."""
    return {"sms_outbox": outbox.counts_by_status(conn)}


def status_warnings(report: dict) -> list[str]:
    """What needs an operator's attention in a report: no workers, jobs waiting too long, SMS stuck."""
    warnings = []
    if report["workers"] is not None and not report["workers"]:
        warnings.append("no RQ worker is registered: start `searchjobs worker` processes")
    if report["jobs"] is not None:
        pending = report["jobs"]["unfinished"]["pending"]
        if (pending["oldest_age_s"] or 0) > STATUS_STUCK_PENDING:
            warnings.append(f"{pending['count']} pending job(s), the oldest {human_age(pending['oldest_age_s'])} "
                            "old: are workers and the scheduler running?")
    if report["sms_outbox"]:
        stuck = {s: n for s, n in report["sms_outbox"].items() if s in ("failed", "unknown", "undelivered")}
        if stuck:
            warnings.append("SMS outbox: " + ", ".join(f"{n} {s}" for s, n in sorted(stuck.items())))
    return warnings


def human_age(seconds: float | None) -> str:
    """A duration as an operator reads it: 45s, 12m, 3h05m ("" for none)."""
    if seconds is None:
        return ""
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def first_line(exc: BaseException) -> str:
    """An error in one line: its type and the first line of its message (the driver's, when wrapped)."""
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"
