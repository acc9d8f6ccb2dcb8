"""What a client (API) or an operator (CLI) can do to a job: cancel it, retry it.

One place for both, so the API and `searchjobs jobs ...` cannot drift apart.
Raises models.jobs.InvalidTransition (with the current row) when the job's
state does not allow it, and errors.NotFound for an unknown job.
"""

from __future__ import annotations

import logging

from searchjobs.jobs.runtime import Runtime
from searchjobs.models import jobs as job_queries
from searchjobs.models.db import translate_errors
from searchjobs.models.jobs import InvalidTransition
from searchjobs.queue import REDIS_UNAVAILABLE, enqueue_search

log = logging.getLogger(__name__)


@translate_errors
def cancel(runtime: Runtime, job_id: str, *, by: str) -> dict:
    """A pending job is cancelled at once (it never starts); a running one at its next progress step."""
    try:
        with runtime.db.connect() as conn:
            row = job_queries.cancel(conn, job_id)
    except InvalidTransition as exc:
        runtime.cache.write_row(exc.current)  # the client is shown the state that won
        raise
    runtime.cache.write_row(row)
    log.info("job cancel requested", extra={"job_id": job_id, "attempt": row["attempts"], "by": by,
                                            "status": row["status"]})
    return row


@translate_errors
def retry(runtime: Runtime, job_id: str, *, by: str) -> tuple[dict, bool]:
    """A failed or cancelled job goes back to pending and is enqueued. Returns (row, enqueued)."""
    with runtime.db.connect() as conn:
        row = job_queries.retry_failed(conn, job_id)
    runtime.cache.write_row(row)
    log.info("job retried", extra={"job_id": job_id, "attempt": row["attempts"], "by": by})
    try:
        enqueue_search(runtime.redis, job_id, job_timeout=runtime.settings.job_timeout)
    except REDIS_UNAVAILABLE:
        return row, False  # pending in Postgres: the reconciler enqueues it
    return row, True
