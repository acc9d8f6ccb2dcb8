"""Submitting a job: commit the row (and its uploaded image) first, enqueue after the commit.

If the enqueue fails because Redis is down, the job stays pending and the
reconciler enqueues it later; the caller still gets its job.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from searchjobs import metrics
from searchjobs.jobs import links
from searchjobs.jobs.intake import ValidatedImage
from searchjobs.jobs.runtime import Runtime
from searchjobs.models import images as image_queries
from searchjobs.models import jobs as job_queries
from searchjobs.models.db import translate_errors
from searchjobs.queue import REDIS_UNAVAILABLE, enqueue_search

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
