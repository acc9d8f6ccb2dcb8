"""What clients (HTTP API) and operators (CLI) do to search jobs: submit, cancel, retry.

One place for both, so the API and `searchjobs jobs ...` cannot drift apart.

Submit commits the row (and its uploaded image) first and enqueues after the
commit. If the enqueue fails because Redis is down, the job stays pending and
the reconciler enqueues it later; the caller still gets its job.

Cancel and retry raise jobs.store.InvalidTransition (with the current row) when
the job's state does not allow it, and errors.NotFound for an unknown job.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from searchjobs import links, metrics
from searchjobs.db.engine import translate_errors
from searchjobs.intake import ValidatedImage
from searchjobs.intake import store as image_queries
from searchjobs.jobs import store as job_queries
from searchjobs.jobs.store import InvalidTransition
from searchjobs.queue import REDIS_UNAVAILABLE, enqueue_search
from searchjobs.runtime import Runtime

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Submitted:
    row: dict
    created: bool  # False: an idempotent replay of an earlier submit
    token: str
    enqueued: bool


@translate_errors
def submit(
    runtime: Runtime, *, categories: list[str], image: ValidatedImage | None, image_url: str | None,
    phone_number: str | None, country_code: str | None, client_id: int | None,
    idempotency_key: str | None, request_hash: str | None,
) -> Submitted:
    job_id = links.new_job_id()
    token = links.result_token(runtime.settings.secret_key, job_id)
    with runtime.engine.begin() as conn:  # the image and the job commit together or not at all
        image_id = None
        if image is not None:
            # the upload is readable back by any process at /images/<public id>
            public_id = image_queries.new_public_id()
            image_url = f"{runtime.settings.public_base_url}/images/{public_id}"
            image_id = image_queries.insert(conn, public_id=public_id, data=image.data,
                                            content_type=image.content_type, width=image.width,
                                            height=image.height, sha256=image.sha256)["id"]
        row = job_queries.create(conn, job_queries.NewJob(
            job_id=job_id, categories=categories, result_token_hash=links.token_hash(token), image_id=image_id,
            original_image_url=image_url, phone_number=phone_number, country_code=country_code,
            client_id=client_id, idempotency_key=idempotency_key, request_hash=request_hash,
        ))
        if not row["created"]:
            conn.rollback()  # an idempotent replay: drop the image we just stored
    if not row["created"]:
        replay_token = links.result_token(runtime.settings.secret_key, row["job_id"])
        return Submitted(row=row, created=False, token=replay_token, enqueued=False)

    enqueued = True
    try:
        enqueue_search(runtime.redis, job_id, job_timeout=runtime.settings.job_timeout)
    except REDIS_UNAVAILABLE as exc:
        enqueued = False
        log.warning("enqueue failed (%s); the reconciler will enqueue the job", type(exc).__name__,
                    extra={"job_id": job_id})
    runtime.cache.write_row(row)
    log.info("job submitted", extra={"job_id": job_id, "attempt": 0, "categories": categories,
                                     "sms": phone_number is not None, "enqueued": enqueued})
    metrics.JOBS_SUBMITTED.inc()
    return Submitted(row=row, created=True, token=token, enqueued=enqueued)


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
