"""Prometheus metrics: the objects every process records into, and the helpers that record.

A leaf: it imports nothing of searchjobs, so any part can count. The gauges of
shared state are computed at scrape time by searchjobs.overview.LiveStateCollector.

No Flask here: workers, the scheduler and the web app all count through these.
Under gunicorn (and whenever PROMETHEUS_MULTIPROC_DIR is set) prometheus-client
keeps each process's values in a file in that directory, and the web's /metrics
adds them up; processes on one machine share the directory, so the counters of
workers started with the same PROMETHEUS_MULTIPROC_DIR show up there too. The
variable must be set before prometheus_client is first imported.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

# -- jobs -------------------------------------------------------------------

JOBS_SUBMITTED = Counter("searchjobs_jobs_submitted_total", "Search jobs created (idempotent replays excluded).")
JOBS_COMPLETED = Counter("searchjobs_jobs_completed_total", "Search jobs that completed.")
JOBS_FAILED = Counter("searchjobs_jobs_failed_total", "Search jobs that failed for good, by error code.",
                      ["error_code"])
JOBS_RETRIED = Counter("searchjobs_jobs_retried_total",
                       "Attempts put back to pending to run again, by reason (error code, lease_expired, shutdown).",
                       ["reason"])
JOBS_CANCELLED = Counter("searchjobs_jobs_cancelled_total", "Running jobs stopped by a cancel at a progress step.")

JOB_DURATION = Histogram(
    "searchjobs_job_duration_seconds", "From submit to the end of the job (completed or failed), by outcome.",
    ["outcome"], buckets=(0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800),
)
QUEUE_WAIT = Histogram(
    "searchjobs_job_queue_wait_seconds", "From submit to the first claim by a worker.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900),
)
STAGE_DURATION = Histogram(
    "searchjobs_job_stage_duration_seconds", "Work done before each progress step, by stage.",
    ["stage"], buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
PROGRESS_WRITE = Histogram(
    "searchjobs_progress_write_seconds", "One persisted progress step: the Postgres write (retries included).",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30),
)

# -- reads ------------------------------------------------------------------

CACHE_LOOKUPS = Counter("searchjobs_cache_lookups_total",
                        "Job reads by where they were answered: hit (Redis) or miss (Postgres).", ["result"])

# -- SMS --------------------------------------------------------------------

SMS_SENDS = Counter("searchjobs_sms_sends_total",
                    "SMS send attempts by outcome (sent, adopted, retry, unknown, failed).", ["outcome"])
SMS_DELIVERY_REPORTS = Counter("searchjobs_sms_delivery_reports_total",
                               "Provider delivery reports recorded, by provider status (delivered, ...).",
                               ["status"])

# -- HTTP -------------------------------------------------------------------

HTTP_REQUESTS = Counter("searchjobs_http_requests_total", "HTTP requests by route, method and status.",
                        ["route", "method", "status"])
HTTP_DURATION = Histogram(
    "searchjobs_http_request_duration_seconds", "Time to the response (not to the end of a stream), by route.",
    ["route"], buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


# -- helpers: one call at each instrumented place -----------------------------

def _seconds_between(start, end) -> float | None:
    if start is None or end is None:
        return None
    return max(0.0, (end - start).total_seconds())


def job_claimed(row: dict) -> None:
    """A claim: the first one measures how long the job waited for a worker (Postgres clock on both ends)."""
    if row["attempts"] == 1:
        wait = _seconds_between(row["created_at"], row["started_at"])
        if wait is not None:
            QUEUE_WAIT.observe(wait)


def job_finished(row: dict, outcome: str, error_code: str | None = None) -> None:
    """A job reached completed or failed (for good)."""
    if outcome == "completed":
        JOBS_COMPLETED.inc()
    else:
        JOBS_FAILED.labels(error_code or "error").inc()
    took = _seconds_between(row.get("created_at"), row.get("finished_at"))
    if took is not None:
        JOB_DURATION.labels(outcome).observe(took)


def stage_done(stage: str, seconds: float) -> None:
    # "searched:dress" -> "searched": one series per kind of stage, not per category
    STAGE_DURATION.labels(stage.split(":", 1)[0]).observe(seconds)


def lease_expired(row: dict) -> None:
    """The reconciler found a job whose worker is gone: it runs again, or failed for good (attempts used up)."""
    if row["status"] == "failed":
        job_finished(row, "failed", row["error_code"])
    else:
        JOBS_RETRIED.labels("lease_expired").inc()
