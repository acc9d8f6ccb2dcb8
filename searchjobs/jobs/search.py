"""The search job: what a worker runs for `searchjobs.jobs.search.run(job_id)`.

Stages, each a persisted progress step:
  claimed (5) -> image_loaded (15) -> features (30) -> searched:<category> (30..90, one per category)
  -> ranked (95) -> completed (100)
"""

from __future__ import annotations

import logging
import time

import sqlalchemy as sa
from rq.timeouts import JobTimeoutException

from searchjobs import defaults, intake, links
from searchjobs.catalog import descriptor
from searchjobs.db.engine import is_outage
from searchjobs.errors import ConfigError, DependencyUnavailable
from searchjobs.intake import store as image_queries
from searchjobs.jobs.lifecycle import AttemptOver, JobAttempt
from searchjobs.notifications.messages import result_message
from searchjobs.queue import REDIS_UNAVAILABLE
from searchjobs.runtime import Runtime, get_runtime

log = logging.getLogger(__name__)

CATEGORY_SPAN = (30, 90)  # progress range shared by the per-category steps


def intake_limits(runtime: Runtime) -> intake.IntakeLimits:
    return intake.IntakeLimits(
        allow_private=runtime.settings.image_allow_private,
        allow_loopback=runtime.settings.image_allow_loopback,
    )


def load_query_image(runtime: Runtime, row: dict):
    """The person's photo: the uploaded bytes from Postgres, or the URL fetched with hard limits.

    The size, format and pixel checks run on the header; the pixels are decoded once, by open_image
    (at draft scale for a big JPEG), which refuses a truncated or corrupt file as the full decode of
    the intake check would have.
    """
    if row["image_id"] is not None:
        with runtime.db.connect() as conn:
            stored = image_queries.get(conn, row["image_id"])
        if stored is None:
            raise intake.ImageError("the uploaded image is gone", code="image_unreadable")
        validated = intake.validate_image_bytes(stored["data"], stored["content_type"], intake_limits(runtime),
                                                decode=False)
    elif row["original_image_url"]:
        validated = intake.fetch_image(row["original_image_url"], intake_limits(runtime), decode=False)
    else:
        raise intake.ImageError("the job has no image", code="image_unreadable")
    return intake.open_image(validated)


def check_sms_fits(public_base_url: str) -> None:
    """Refuse (at worker start) a PUBLIC_BASE_URL whose result links make the SMS longer than one segment."""
    try:
        result_message(links.result_url(public_base_url, "x" * 43))
    except ValueError as exc:
        raise ConfigError(f"PUBLIC_BASE_URL is too long for a one-segment SMS with its result link: {exc}") from exc


def sms_body(runtime: Runtime, row: dict) -> str | None:
    """The outbox text, with the link as a placeholder: the token is never stored in clear."""
    if row["phone_number"] is None:
        return None
    return result_message(links.LINK_PLACEHOLDER)


def execute(runtime: Runtime, job: JobAttempt) -> None:
    """The stages of one attempt; raises on failure, the caller classifies."""
    started = time.perf_counter()
    image = load_query_image(runtime, job.row)
    job.step(15, "image_loaded", {"width": image.width, "height": image.height})

    embedder = runtime.embedders.active(runtime.db)  # the catalog's, read per job: a switch applies at once
    # the colours shown on the result page are our descriptor's view of the photo, whatever embeds it
    analysis = descriptor.analyse(image)
    vector = analysis.vector if embedder.spec == "descriptor" else embedder.embed(image)
    job.step(30, "features", {"embedder": embedder.name})

    backend = runtime.search_backend
    categories = job.row["categories"]
    results: dict[str, list[dict]] = {}
    low, high = CATEGORY_SPAN
    for index, category in enumerate(categories, start=1):
        hits = backend.search(category, vector, defaults.DEFAULT_TOP_K, embedder=embedder.name)
        results[category] = hits
        job.step(low + (high - low) * index // len(categories), f"searched:{category}",
                 {"category": category, "hits": len(hits)})

    document = {
        "categories": results,
        "catalog_version": backend.catalog_version(),
        "took_ms": round((time.perf_counter() - started) * 1000, 1),
        # the garment's dominant colours as the descriptor saw them, so people can tell why these items came back
        "query_colours": analysis.colours,
    }
    job.step(95, "ranked", {"items": sum(len(h) for h in results.values())})
    job.complete(document, sms_body(runtime, job.row))


def run(job_id: str) -> None:
    """RQ entry point. Every outcome is recorded on the row; RQ only sees success or a crash."""
    runtime = get_runtime()
    job = JobAttempt.claim(runtime, job_id)
    if job is None:
        return
    try:
        _run_attempt(runtime, job)
    except AttemptOver:
        pass
    finally:
        runtime.current_attempt = None


def _run_attempt(runtime: Runtime, job: JobAttempt) -> None:
    try:
        execute(runtime, job)
    except AttemptOver:
        raise
    except intake.ImageError as exc:
        if exc.transient:
            job.retry_later(exc.code, exc.message)
        else:
            job.fail(exc.code, exc.message)
    except JobTimeoutException:
        job.retry_later("job_timeout", f"the search ran longer than {runtime.settings.job_timeout}s")
    except (DependencyUnavailable, *REDIS_UNAVAILABLE) as exc:
        job.retry_later("dependency_unavailable", type(exc).__name__)
    except Exception as exc:
        if database_unreachable(runtime, exc):
            # an outage, not a bug: the retry's own write waits for Postgres to come back
            job.retry_later("dependency_unavailable", type(exc).__name__)
            return
        # unknown errors are retried (they may be transient) until the attempts run out
        log.exception("search failed unexpectedly", extra={"job_id": job.job_id, "attempt": job.attempt})
        job.retry_later("internal_error", "the search failed unexpectedly")


def database_unreachable(runtime: Runtime, exc: BaseException) -> bool:
    """Postgres went away under a stage's read: wrapped by SQLAlchemy, or raw from a backend's own cursor."""
    if isinstance(exc, (sa.exc.DBAPIError, sa.exc.TimeoutError)):
        return is_outage(exc)
    dbapi = runtime.engine.dialect.loaded_dbapi
    return isinstance(exc, (dbapi.OperationalError, dbapi.InterfaceError))
