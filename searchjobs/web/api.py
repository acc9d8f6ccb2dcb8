"""The JSON API (/api/...): thin views over jobs.submit, the cache read path and the models."""

from __future__ import annotations

import base64
import binascii

from flask import Blueprint, Response, jsonify, request, url_for

from searchjobs import defaults, links, service
from searchjobs.db.engine import translate_errors
from searchjobs.db.tables import JOB_STATUSES
from searchjobs.intake import IntakeLimits
from searchjobs.jobs import store as job_queries
from searchjobs.jobs.cache import job_view, read_through, read_through_token
from searchjobs.jobs.store import InvalidTransition
from searchjobs.service import submit
from searchjobs.web.auth import Caller, current_caller, require_submitter
from searchjobs.web.catalog_view import catalog_categories, catalog_loading
from searchjobs.web.errors import ApiError
from searchjobs.web.runtime import runtime
from searchjobs.web.submission import parse_submission

bp = Blueprint("api", __name__, url_prefix="/api")

PUBLIC_FIELDS = ("job_id", "status", "progress", "stage", "version", "attempts", "categories", "sms",
                 "cancel_requested", "error", "created_at", "updated_at", "started_at", "finished_at")
MAX_PAGE = 200  # rows per page of a listing or the change feed
DEFAULT_PAGE = 50
MAX_BIGINT = 2**63 - 1  # ids and transaction ids are bigint
MAX_ID_DIGITS = 18  # a list cursor or an earliest-form feed cursor: any such number fits a bigint
ID_WIDTH = 19  # digits of the event id in a feed cursor, zero-padded


@bp.before_app_request
def _one_value_per_query_parameter():
    """`?limit=1&limit=500` would be read as its first value: refuse it rather than guess (every /api path)."""
    if request.path.startswith("/api/"):
        repeated = [name for name, values in request.args.lists() if len(values) > 1]
        if repeated:
            raise ApiError(400, "bad_request", f"the query parameter {repeated[0][:40]} is given more than once")


def public_url(endpoint: str, **values) -> str:
    """An absolute URL of this service, on PUBLIC_BASE_URL as the result links are: every URL the API hands
    out is absolute, whatever host the request came in by."""
    return runtime().settings.public_base_url.rstrip("/") + url_for(endpoint, **values)


def present(view: dict, *, with_results: bool) -> dict:
    """A job as a caller sees it: never the phone number; results only for those entitled to them."""
    body = {name: view.get(name) for name in PUBLIC_FIELDS}
    body["status_url"] = public_url("api.get_job", job_id=view["job_id"])
    if with_results and view["status"] == "completed":
        body["results"] = view.get("results")
    return body


def visible_job(job_id: str, caller: Caller) -> tuple[dict, str]:
    """The job's view (cache first) if the caller may see it, else 404: the API's and the streams' rule."""
    if len(job_id) > 100:
        raise ApiError(404, "not_found", "no such job")
    view, source = read_through(runtime().cache, runtime().db, job_id)
    if view is None or not caller.may_see(view):
        raise ApiError(404, "not_found", "no such job")
    return view, source


def result_job(token: str) -> tuple[dict | None, str]:
    """The job behind a result link (cache first): (view, "hit"|"miss"), or (None, "miss") for an unknown
    or malformed token. Holding the link is the permission: no caller check."""
    if not links.looks_like_token(token):
        return None, "miss"
    return read_through_token(runtime().cache, runtime().db, links.token_hash(token))


def _owned_job(job_id: str, caller: Caller) -> dict:
    view, _ = visible_job(job_id, caller)
    if not caller.owns(view) and not (caller.anonymous and view.get("client_id") is None):
        raise ApiError(404, "not_found", "no such job")
    return view


def _limits() -> IntakeLimits:
    settings = runtime().settings
    return IntakeLimits(allow_private=settings.image_allow_private, allow_loopback=settings.image_allow_loopback)


def refuse_while_catalog_loads() -> None:
    """503 catalog_loading with Retry-After while the catalog's first load runs: a search now would
    see part of the catalog and say nothing of the rest, so none starts."""
    load = catalog_loading()
    if load is not None:
        raise ApiError(503, "catalog_loading",
                       f"the catalog is loading ({load.loaded} of {load.total} items); retry shortly",
                       loaded=load.loaded, total=load.total)


@translate_errors
def _known_categories() -> set[str]:
    return runtime().catalog_facts.category_names()


@bp.post("/search-jobs")
def create_job():
    caller = require_submitter()
    refuse_while_catalog_loads()
    submission = parse_submission(request, _known_categories(), _limits())
    rt = runtime()
    result = submit(
        rt, categories=submission.categories, image=submission.image, image_url=submission.image_url,
        phone_number=submission.phone_number, country_code=submission.country_code,
        client_id=caller.client_id, idempotency_key=submission.idempotency_key,
        request_hash=submission.request_hash() if submission.idempotency_key else None,
    )
    if not result.created and result.row.get("request_hash") != submission.request_hash():
        # 409: the key is already bound to another request, a state no request body can be checked against
        raise ApiError(409, "idempotency_key_reused",
                       "this Idempotency-Key was used for a different request")
    view = job_view(result.row)
    body = present(view, with_results=False)
    body["result_url"] = links.result_url(rt.settings.public_base_url, result.token)
    body["result_token"] = result.token
    response = jsonify(body)
    response.status_code = 202
    response.headers["Location"] = body["status_url"]
    if not result.created:
        response.headers["Idempotent-Replayed"] = "true"
    return response


@bp.get("/search-jobs/<job_id>")
def get_job(job_id: str):
    caller = current_caller()
    view, source = visible_job(job_id, caller)
    response = jsonify(present(view, with_results=caller.owns(view)))
    response.headers["X-Cache"] = source
    return response


def _page_limit() -> int:
    raw = request.args.get("limit", str(DEFAULT_PAGE))
    # ASCII only: str.isdigit() is also true of "²" (which int() refuses) and of other scripts' digits
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_PAGE:
        raise ApiError(400, "invalid_limit", f"limit must be an integer from 1 to {MAX_PAGE}")
    return int(raw)


def _encode_cursor(value: int) -> str:
    return base64.urlsafe_b64encode(str(value).encode()).rstrip(b"=").decode()


def _cursor_digits(raw: str, name: str) -> str:
    """The digits inside a cursor (unpadded URL-safe base64 of a decimal string: CURSOR_PATTERN)."""
    try:
        text = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
    except (ValueError, binascii.Error, UnicodeDecodeError):
        text = ""
    if not text.isascii() or not text.isdigit() or len(raw) > 60:
        raise ApiError(400, "invalid_cursor", f"{name} is not a cursor this API gave out")
    return text


def _decode_cursor(raw: str | None, name: str) -> int | None:
    if raw in (None, ""):
        return None
    digits = _cursor_digits(raw, name)
    if len(digits) > MAX_ID_DIGITS:
        raise ApiError(400, "invalid_cursor", f"{name} is not a cursor this API gave out")
    return int(digits)


@bp.get("/search-jobs")
@translate_errors
def list_jobs():
    caller = current_caller()
    status = request.args.get("status")  # absent: every status; "" is not one (the document's enum)
    if status is not None and status not in JOB_STATUSES:
        raise ApiError(400, "invalid_status", f"status must be one of {', '.join(JOB_STATUSES)}")
    limit = _page_limit()
    before = _decode_cursor(request.args.get("cursor"), "cursor")
    if caller.anonymous:
        raise ApiError(401, "api_key_required", "listing jobs needs an API key")
    with runtime().db.connect() as conn:
        rows = job_queries.list_jobs(conn, status=status, limit=limit, before_id=before,
                                     client_id=caller.client_id, admin=caller.is_admin)
    jobs = [present(job_view(r), with_results=False) for r in rows]
    next_cursor = _encode_cursor(rows[-1]["id"]) if len(rows) == limit else None
    return jsonify({"jobs": jobs, "next_cursor": next_cursor})


@bp.post("/search-jobs/<job_id>/cancel")
@translate_errors
def cancel_job(job_id: str):
    caller = current_caller()
    _owned_job(job_id, caller)
    try:
        row = service.cancel(runtime(), job_id, by="client")
    except InvalidTransition as exc:
        raise ApiError(409, "job_finished", exc.message,
                       job=present(job_view(exc.current), with_results=False)) from exc
    return jsonify(present(job_view(row), with_results=False)), 202 if row["status"] != "cancelled" else 200


@bp.post("/search-jobs/<job_id>/retry")
@translate_errors
def retry_job(job_id: str):
    caller = current_caller()
    view = _owned_job(job_id, caller)
    if caller.anonymous:
        raise ApiError(403, "forbidden", "retrying a job needs its owner's or an admin API key")
    try:
        row, _ = service.retry(runtime(), view["job_id"], by="client")
    except InvalidTransition as exc:
        raise ApiError(409, "job_not_failed", exc.message,
                       job=present(job_view(exc.current), with_results=False)) from exc
    return jsonify(present(job_view(row), with_results=False)), 202


@bp.delete("/search-jobs/<job_id>")
@translate_errors
def delete_job(job_id: str):
    caller = current_caller()
    view = _owned_job(job_id, caller)
    if caller.anonymous:
        raise ApiError(403, "forbidden", "deleting a job needs its owner's or an admin API key")
    rt = runtime()
    with rt.engine.begin() as conn:
        if view["status"] in ("pending", "processing"):
            try:
                job_queries.cancel(conn, job_id)
            except InvalidTransition:
                pass
        deleted = job_queries.delete(conn, job_id)
    # a tombstone, so a reader that fetched the row just before the delete cannot cache it again
    rt.cache.delete(job_id, deleted["result_token_hash"] if deleted else None)
    return Response(status=204)


@bp.get("/changes")
@translate_errors
def changes():
    caller = current_caller()
    if caller.anonymous:
        raise ApiError(401, "api_key_required", "the change feed needs an API key")
    since = _decode_feed_cursor(request.args.get("since"))
    limit = _page_limit()
    with runtime().db.connect() as conn:
        events = job_queries.changes(conn, since, limit, caller.client_id, caller.is_admin)
    position = (events[-1]["tx_id"], events[-1]["id"]) if events else since
    for event in events:
        del event["tx_id"]
        event["created_at"] = event["created_at"].isoformat()
    return jsonify({"events": events, "next_cursor": _encode_feed_cursor(position),
                    "has_more": len(events) == limit})


def _encode_feed_cursor(position: tuple[int, int] | int) -> str:
    """The feed's cursor, opaque to clients: the transaction of the last event seen, then its id padded to
    19 digits, as one decimal string (a bare id, of at most 18 digits, is the earliest form)."""
    text = f"{position[0]}{position[1]:019d}" if isinstance(position, tuple) else str(position)
    return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()


def _decode_feed_cursor(raw: str | None) -> tuple[int, int] | int:
    """(tx_id, id) from this API's cursor; a bare event id from the earliest form; the start without one.
    Every string of FEED_CURSOR_PATTERN is a position: numbers past bigint's range mean "after all"."""
    if raw in (None, ""):
        return (0, 0)
    try:  # the "tx.id" form this API gave out before
        tx, dot, event = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode().partition(".")
        if dot and len(raw) <= 60 and tx.isdigit() and event.isdigit() and tx.isascii() and event.isascii():
            return (min(int(tx), MAX_BIGINT), min(int(event), MAX_BIGINT))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        pass
    digits = _cursor_digits(raw, "since")
    if len(digits) <= MAX_ID_DIGITS:
        return int(digits)
    if len(digits) > 2 * ID_WIDTH + 1:
        raise ApiError(400, "invalid_cursor", "since is not a cursor this API gave out")
    return (min(int(digits[:-ID_WIDTH] or "0"), MAX_BIGINT), min(int(digits[-ID_WIDTH:]), MAX_BIGINT))


@bp.get("/results/<token>")
def results(token: str):
    view, source = result_job(token)
    if view is None:
        raise ApiError(404, "not_found", "no such result link")
    response = jsonify(present(view, with_results=True))
    response.headers["X-Cache"] = source
    response.headers["Cache-Control"] = "private, no-store"
    return response


@bp.get("/categories")
@translate_errors
def categories():
    refuse_while_catalog_loads()
    return jsonify({"categories": catalog_categories(), "max_per_job": defaults.MAX_CATEGORIES})
