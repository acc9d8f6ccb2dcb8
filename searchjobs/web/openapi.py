"""The OpenAPI 3.1 description of every route, served at /openapi.json, and a /docs page that renders it.

The bodies are the pydantic models of web/schemas.py (their JSON Schemas are the
components); the paths, parameters, responses and links are the table below.
tests/integration/test_openapi_contract.py holds it to the truth: every route
of the app is described and nothing else is (the paths and methods are
compared with `app.url_map`), and schemathesis runs generated requests
against the live app and checks every answer against this document;
tests/integration/test_schemathesis_cli.py runs schemathesis's own CLI, with
its stateful phase following the links, against the real web process.
"""

from __future__ import annotations

import copy
import functools

from flask import Blueprint, abort, jsonify, make_response, render_template, send_from_directory
from swagger_ui_bundle import swagger_ui_path

from searchjobs import __version__, defaults
from searchjobs.db.engine import translate_errors
from searchjobs.db.tables import JOB_STATUSES
from searchjobs.errors import DependencyUnavailable
from searchjobs.intake import ALLOWED_CONTENT_TYPES, MAX_IMAGE_BYTES
from searchjobs.web import schemas
from searchjobs.web.api import DEFAULT_PAGE, MAX_PAGE
from searchjobs.web.runtime import runtime
from searchjobs.web.schemas import CURSOR_PATTERN, FEED_CURSOR_PATTERN, MAX_IDEMPOTENCY_KEY
from searchjobs.web.security import DOCS_CONTENT_SECURITY_POLICY

bp = Blueprint("openapi", __name__)

# Files, served but not part of the API: Flask's /static and Swagger UI's own (for /docs).
UNDOCUMENTED_ENDPOINTS = frozenset({"static", "openapi.docs_asset"})
DOCS_ASSETS = frozenset({"swagger-ui.css", "swagger-ui-bundle.js"})
DOCS_ASSET_MAX_AGE = 86400  # seconds: the files change only with the package

# Every `error.code` an answer may carry, with what it means. The Error schema's enum is this list.
ERROR_CODES = {
    # request shape
    "bad_request": "The request could not be read (for example a broken multipart body), or an /api query "
                   "parameter is given more than once.",
    "malformed_json": "The body is not valid JSON.",
    "malformed_multipart": "The multipart/form-data body has no boundary or no readable part.",
    "invalid_body": "The JSON body is not an object.",
    "unknown_field": "The body has a field this operation does not take (`field` names it).",
    "invalid_field": "A field has the wrong type or holds a NUL byte (`field` names it).",
    "field_too_long": "A text field or a category name is too long.",
    "unsupported_media_type": "The body is neither multipart/form-data nor application/json.",
    "payload_too_large": f"The body is larger than {defaults.MAX_CONTENT_LENGTH} bytes.",
    "method_not_allowed": "The path exists but not with this method.",
    "not_found": "No such job, result link, image or path (or not visible to this caller).",
    # submissions
    "categories_required": "No category was given, or a categories entry names none.",
    "too_many_categories": f"More than {defaults.MAX_CATEGORIES} distinct categories.",
    "unknown_category": "A category is not in the catalog (see GET /api/categories).",
    "image_required": "Neither an image file nor an image_url was given, or the file is empty.",
    "image_conflict": "Both an image file and an image_url were given.",
    "image_too_large": f"The image is larger than {MAX_IMAGE_BYTES} bytes.",
    "image_unsupported_type": "The image is in a format other than JPEG, PNG, WebP or GIF.",
    "image_unreadable": "The file is not an image, or it is damaged.",
    "image_dimensions_too_large": "The image has too many pixels (its header is checked before decoding).",
    "image_url_invalid": "The image_url is not an http(s) URL this service can fetch.",
    "image_url_forbidden": "The image_url points at a loopback, private or metadata address.",
    "invalid_phone_number": "The phone number is not valid or cannot receive SMS, or country_code is not a "
                            "region or calling code (`field` says which).",
    "invalid_idempotency_key": f"The Idempotency-Key header is not 1-{MAX_IDEMPOTENCY_KEY} printable ASCII "
                               "characters.",
    "idempotency_key_reused": "The Idempotency-Key was used earlier for a different request (409).",
    # listings
    "invalid_limit": f"limit is not an integer from 1 to {MAX_PAGE}.",
    "invalid_status": "status is not a job status.",
    "invalid_cursor": "cursor / since is not a cursor this API gave out.",
    "invalid_last_event_id": "Last-Event-ID is not an event id this API sent.",
    # who may do what
    "unauthorized": "Credentials are missing (metrics).",
    "invalid_authorization": "The Authorization header is not `Bearer <api key>`.",
    "invalid_api_key": "The API key is unknown or revoked.",
    "api_key_required": "This operation (or, with SEARCHJOBS_ALLOW_ANONYMOUS=false, this service) needs "
                        "an API key.",
    "forbidden": "The caller may see the job but not change it this way.",
    "invalid_signature": "The Twilio signature is missing or wrong.",
    "invalid_callback": "The Twilio callback lacks MessageSid or MessageStatus.",
    # state
    "conflict": "The job changed meanwhile; read it again.",
    "job_finished": "The job is already finished and cannot be cancelled (`job` holds it).",
    "job_not_failed": "Only a failed job can be retried (`job` holds it).",
    "unprocessable": "The request is well formed but cannot be carried out.",
    # limits and outages
    "rate_limited": "Too many requests; wait for Retry-After seconds.",
    "too_many_streams": "This server holds as many live streams as it may; poll the status instead.",
    "service_unavailable": "Postgres or Redis is unavailable (or, for requests without a key, rate "
                           "limiting is); retry after Retry-After seconds.",
    "catalog_loading": "The catalog's first load is running (`loaded` of `total` items): categories and "
                       "submits answer once it is done; retry after Retry-After seconds.",
    "internal_error": "A bug. No details are given to clients; the server log has them.",
    "http_error": "Any other HTTP error.",
}

IMAGE_TYPES = sorted(ALLOWED_CONTENT_TYPES)


def _ref(kind: str, name: str) -> dict:
    return {"$ref": f"#/components/{kind}/{name}"}


def _json(schema: dict) -> dict:
    return {"application/json": {"schema": schema}}


def _ok(description: str, schema: dict, headers: dict | None = None, links: dict | None = None) -> dict:
    response = {"description": description, "content": _json(schema)}
    if headers:
        response["headers"] = headers
    if links:
        response["links"] = links
    return response


def _errors(*statuses: int) -> dict:
    return {str(status): _ref("responses", ERROR_RESPONSES[status]) for status in statuses}


ERROR_RESPONSES = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    413: "PayloadTooLarge",
    415: "UnsupportedMediaType",
    422: "Unprocessable",
    429: "RateLimited",
    503: "Unavailable",
}

ERROR_DESCRIPTIONS = {
    400: "The request is malformed: see `error.code`.",
    401: "The API key is missing (where one is required), malformed, unknown or revoked.",
    403: "Not allowed for this caller.",
    404: "Not found, or not visible to this caller.",
    405: "Method not allowed.",
    409: "The job's state does not allow this, or the Idempotency-Key belongs to another request.",
    413: "The body (or the image) is too large.",
    415: "Unsupported body or image type.",
    422: "Well formed but not acceptable (categories, image, URL, phone number).",
    429: "Rate limited: see Retry-After.",
    503: "A dependency is unavailable: retry after Retry-After seconds.",
}

RETRY_AFTER = {"description": "Seconds to wait before retrying.", "schema": {"type": "integer", "minimum": 0}}
RATE_LIMIT_HEADERS = {
    "RateLimit-Limit": {"description": "Requests allowed in the current window (when rate limits are on).",
                        "schema": {"type": "integer"}},
    "RateLimit-Remaining": {"description": "Requests left in the current window.", "schema": {"type": "integer"}},
    "RateLimit-Reset": {"description": "Seconds until the window resets.", "schema": {"type": "integer"}},
}
X_CACHE = {"description": "`hit` when served from Redis, `miss` when read from Postgres.",
           "schema": {"type": "string", "enum": ["hit", "miss"]}}



def component_schemas(categories: tuple[str, ...] | None) -> dict:
    """The models' schemas (web/schemas.py), with what only this module knows: the error codes, and the
    catalog's category names (when known) as the submit entries' enum."""
    found = schemas.component_schemas()
    code = found["ErrorDetail"]["properties"]["code"]
    code.update({"enum": list(ERROR_CODES), "x-descriptions": ERROR_CODES})
    for name in ("SubmitJson", "SubmitMultipart"):
        entries = found[name]["properties"]["categories"]
        if categories:
            # the document is as strict as the server: any other name is refused (422 unknown_category)
            entries["items"] = {"type": "string", "enum": list(categories)}
    return found


PARAMETERS = {
    "JobId": {"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"},
              "description": "The `job_id` a submit returned."},
    "Token": {"name": "token", "in": "path", "required": True,
              "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{43}$"},
              "description": "The result-link token (the last part of `result_url`)."},
    "Limit": {"name": "limit", "in": "query", "required": False,
              "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": DEFAULT_PAGE}},
    "LastEventId": {"name": "Last-Event-ID", "in": "header", "required": False,
                    "schema": {"type": "string", "pattern": "^[0-9]{1,18}$"},
                    "description": "Resume after this event id (EventSource sends it when it reconnects)."},
    "LastEventIdQuery": {"name": "last_event_id", "in": "query", "required": False,
                         "schema": {"type": "string", "pattern": "^[0-9]{1,18}$"},
                         "description": "Same as Last-Event-ID, for clients that cannot set headers."},
    "IdempotencyKey": {"name": "Idempotency-Key", "in": "header", "required": False,
                       "schema": {"type": "string", "minLength": 1, "maxLength": MAX_IDEMPOTENCY_KEY,
                                  "pattern": "^[!-~]+$"},
                       "description": "Repeat a submit safely: the same key with the same request within "
                                      f"{defaults.IDEMPOTENCY_WINDOW_HOURS} hours returns the first job "
                                      "(with `Idempotent-Replayed: true`); with another request, 409."},
}

SSE_STREAM = {
    "description": "Server-Sent Events, one per persisted step: `id:` is the event id (the cursor), "
                   "`event:` is `progress`, `completed`, `failed` or `cancelled`, `data:` is JSON (kind, status, "
                   "progress, stage, version, at). The stream closes after the final event.",
    "content": {"text/event-stream": {"schema": _ref("schemas", "StepEvent")}},
    "headers": {"Cache-Control": {"schema": {"type": "string"}}},
}
SSE_DONE = {"description": "The job is finished and every event has been sent: EventSource stops reconnecting."}

HTML = {"text/html": {"schema": {"type": "string"}}}
IMAGE_CONTENT = {content_type: {"schema": {"type": "string", "contentMediaType": content_type}}
                 for content_type in IMAGE_TYPES}

JOB_TAG, STREAM_TAG, OPS_TAG, PAGE_TAG = "jobs", "live progress", "operations", "pages"

# OpenAPI links: from an answer that holds a job to the operations on that job (clients, and schemathesis's
# stateful phase, follow them from a submit to real jobs).
JOB_ID = "$response.body#/job_id"
TOKEN = "$response.body#/result_token"
JOB_LINKS = {
    name: {"operationId": name, "parameters": {"job_id": JOB_ID}}
    for name in ("getJob", "jobEvents", "cancelJob", "retryJob", "deleteJob")
}

PATHS = {
    "/api/search-jobs": {
        "post": {
            "tags": [JOB_TAG],
            "operationId": "submitJob",
            "summary": "Submit a search job",
            "description": "Records the job in Postgres and queues it. Send the photo as multipart/form-data "
                           "(field `image`) or give `image_url` (multipart or JSON). Nothing is written when "
                           "the request is refused. Without an API key the job is anonymous (allowed unless "
                           "SEARCHJOBS_ALLOW_ANONYMOUS=false) and stricter rate limits apply.",
            "parameters": [_ref("parameters", "IdempotencyKey")],
            "requestBody": {
                "required": True,
                "content": {
                    "multipart/form-data": {
                        "schema": _ref("schemas", "SubmitMultipart"),
                        "encoding": {"image": {"contentType": ", ".join(IMAGE_TYPES)}},
                    },
                    "application/json": {"schema": _ref("schemas", "SubmitJson")},
                },
            },
            "responses": {
                "202": _ok("Accepted: the job is recorded and queued.", _ref("schemas", "SubmittedJob"), links={
                    **JOB_LINKS,
                    "getResults": {"operationId": "getResults", "parameters": {"token": TOKEN}},
                    "resultEvents": {"operationId": "resultEvents", "parameters": {"token": TOKEN}},
                    "resultPage": {"operationId": "resultPage", "parameters": {"token": TOKEN}},
                }, headers={
                    "Location": {"description": "The job's status URL.", "required": True,
                                 "schema": {"type": "string"}},
                    "Idempotent-Replayed": {"description": "`true` when an Idempotency-Key replay returned an "
                                                           "earlier job.", "schema": {"type": "string"}},
                }),
                **_errors(400, 401, 409, 413, 415, 422, 429, 503),
            },
        },
        "get": {
            "tags": [JOB_TAG],
            "operationId": "listJobs",
            "summary": "List the caller's jobs, newest first",
            "description": "Needs an API key; an admin key lists every job. Keyset pagination: pass "
                           "`next_cursor` back as `cursor`; pages stay stable while new jobs arrive.",
            "parameters": [
                {"name": "status", "in": "query", "required": False,
                 "schema": {"type": "string", "enum": list(JOB_STATUSES)}},
                _ref("parameters", "Limit"),
                {"name": "cursor", "in": "query", "required": False,
                 "schema": {"type": "string", "pattern": CURSOR_PATTERN},
                 "description": "A `next_cursor` of an earlier page."},
            ],
            "responses": {
                "200": _ok("A page of jobs.", _ref("schemas", "JobList")),
                **_errors(400, 401, 429, 503),
            },
        },
    },
    "/api/search-jobs/{job_id}": {
        "parameters": [_ref("parameters", "JobId")],
        "get": {
            "tags": [JOB_TAG],
            "operationId": "getJob",
            "summary": "A job's status (and results, for its owner)",
            "description": "Its owner and admins see everything; anyone holding the id of an anonymous job "
                           "sees its status without results. Served from the Redis cache, else Postgres.",
            "responses": {
                "200": _ok("The job.", _ref("schemas", "Job"), headers={"X-Cache": X_CACHE}, links=JOB_LINKS),
                **_errors(401, 404, 429, 503),
            },
        },
        "delete": {
            "tags": [JOB_TAG],
            "operationId": "deleteJob",
            "summary": "Delete a job with its events, image, SMS outbox rows and cache entry",
            "description": "Owner or admin key. A running job is cancelled first.",
            "responses": {
                "204": {"description": "Deleted; the id answers 404 from now on."},
                **_errors(401, 403, 404, 429, 503),
            },
        },
    },
    "/api/search-jobs/{job_id}/cancel": {
        "parameters": [_ref("parameters", "JobId")],
        "post": {
            "tags": [JOB_TAG],
            "operationId": "cancelJob",
            "summary": "Cancel a job",
            "description": "A pending job is cancelled at once (200); a running one is asked to stop and stops "
                           "at its next step (202).",
            "responses": {
                "200": _ok("Cancelled.", _ref("schemas", "Job"), links=JOB_LINKS),
                "202": _ok("Cancellation requested.", _ref("schemas", "Job"), links=JOB_LINKS),
                **_errors(401, 404, 409, 429, 503),
            },
        },
    },
    "/api/search-jobs/{job_id}/retry": {
        "parameters": [_ref("parameters", "JobId")],
        "post": {
            "tags": [JOB_TAG],
            "operationId": "retryJob",
            "summary": "Run a failed job again",
            "description": "Owner or admin key.",
            "responses": {
                "202": _ok("Queued again.", _ref("schemas", "Job"), links=JOB_LINKS),
                **_errors(401, 403, 404, 409, 429, 503),
            },
        },
    },
    "/api/search-jobs/{job_id}/events": {
        "parameters": [_ref("parameters", "JobId")],
        "get": {
            "tags": [STREAM_TAG],
            "operationId": "jobEvents",
            "summary": "Live progress of a job (Server-Sent Events)",
            "description": "Same visibility as GET /api/search-jobs/{job_id}.",
            "parameters": [_ref("parameters", "LastEventId"), _ref("parameters", "LastEventIdQuery")],
            "responses": {
                "200": SSE_STREAM,
                "204": SSE_DONE,
                **_errors(400, 401, 404, 429, 503),
            },
        },
    },
    "/api/changes": {
        "get": {
            "tags": [JOB_TAG],
            "operationId": "changes",
            "summary": "The change feed: every step of the caller's jobs, oldest first",
            "description": "Needs an API key (an admin key sees every job). Poll with `since` = the last "
                           "`next_cursor`.",
            "parameters": [
                {"name": "since", "in": "query", "required": False,
                 "schema": {"type": "string", "pattern": FEED_CURSOR_PATTERN},
                 "description": "The `next_cursor` of the previous poll; without it, from the start."},
                _ref("parameters", "Limit"),
            ],
            "responses": {
                "200": _ok("Events after the cursor.", _ref("schemas", "Changes"), links={
                    "nextChanges": {"operationId": "changes", "parameters": {"since": "$response.body#/next_cursor"}},
                }),
                **_errors(400, 401, 429, 503),
            },
        },
    },
    "/api/results/{token}": {
        "parameters": [_ref("parameters", "Token")],
        "get": {
            "tags": [JOB_TAG],
            "operationId": "getResults",
            "summary": "A job and its results, by result-link token",
            "description": "No API key needed: the token is the key to this one job.",
            "security": [{}],
            "responses": {
                "200": _ok("The job, with results once completed.", _ref("schemas", "Job"), headers={
                    "X-Cache": X_CACHE,
                    "Cache-Control": {"schema": {"type": "string", "const": "private, no-store"}},
                }),
                **_errors(401, 404, 429, 503),
            },
        },
    },
    "/api/results/{token}/events": {
        "parameters": [_ref("parameters", "Token")],
        "get": {
            "tags": [STREAM_TAG],
            "operationId": "resultEvents",
            "summary": "Live progress by result-link token (Server-Sent Events)",
            "security": [{}],
            "parameters": [_ref("parameters", "LastEventId"), _ref("parameters", "LastEventIdQuery")],
            "responses": {
                "200": SSE_STREAM,
                "204": SSE_DONE,
                **_errors(400, 401, 404, 429, 503),
            },
        },
    },
    "/api/categories": {
        "get": {
            "tags": [JOB_TAG],
            "operationId": "categories",
            "summary": "The catalog's categories and how many may be asked for at once",
            "security": [{}],
            "responses": {
                "200": _ok("The categories.", _ref("schemas", "Categories")),
                **_errors(401, 429, 503),
            },
        },
    },
    "/healthz": {
        "get": {
            "tags": [OPS_TAG],
            "operationId": "healthz",
            "summary": "Liveness: the process serves requests",
            "security": [{}],
            "responses": {"200": _ok("Alive.", _ref("schemas", "Health"))},
        },
    },
    "/readyz": {
        "get": {
            "tags": [OPS_TAG],
            "operationId": "readyz",
            "summary": "Readiness: Postgres and Redis reachable",
            "security": [{}],
            "responses": {
                "200": _ok("Ready.", _ref("schemas", "Readiness")),
                "503": _ok("Not ready; `checks` says which dependency is down.", _ref("schemas", "Readiness"),
                           headers={"Retry-After": RETRY_AFTER}),
            },
        },
    },
    "/metrics": {
        "get": {
            "tags": [OPS_TAG],
            "operationId": "metrics",
            "summary": "Prometheus metrics",
            "description": "With SEARCHJOBS_METRICS_TOKEN set, needs `Authorization: Bearer <token>`; "
                           "without it, served to loopback addresses only.",
            "security": [{"metricsToken": []}, {}],
            "responses": {
                "200": {"description": "Prometheus text format.",
                        "content": {"text/plain": {"schema": {"type": "string"}}}},
                **_errors(401, 403),
            },
        },
    },
    "/images/{public_id}": {
        "get": {
            "tags": [OPS_TAG],
            "operationId": "uploadedImage",
            "summary": "An uploaded photo, by its unguessable id",
            "security": [{}],
            "parameters": [{"name": "public_id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {
                "200": {"description": "The image bytes.", "content": IMAGE_CONTENT,
                        "headers": {"ETag": {"schema": {"type": "string"}}}},
                **_errors(404, 503),
            },
        },
    },
    "/catalog/images/{sku}": {
        "get": {
            "tags": [OPS_TAG],
            "operationId": "catalogImage",
            "summary": "A catalog product's image",
            "security": [{}],
            "parameters": [{"name": "sku", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {
                "200": {"description": "The image bytes.", "content": IMAGE_CONTENT},
                "302": {"description": "The product's image lives elsewhere.",
                        "headers": {"Location": {"required": True, "schema": {"type": "string"}}}},
                **_errors(404, 503),
            },
        },
    },
    "/webhooks/twilio/status": {
        "post": {
            "tags": [OPS_TAG],
            "operationId": "twilioStatus",
            "summary": "Twilio SMS delivery callbacks",
            "description": "Signed by Twilio (X-Twilio-Signature over PUBLIC_BASE_URL + path and the form).",
            "security": [{}],
            "parameters": [{"name": "X-Twilio-Signature", "in": "header", "required": False,
                            "schema": {"type": "string"}}],
            "requestBody": {
                "required": True,
                "content": {"application/x-www-form-urlencoded": {"schema": _ref("schemas", "TwilioStatus")}},
            },
            "responses": {
                "200": _ok("Recorded (or ignored as a duplicate, out of order, or for an unknown message).",
                           _ref("schemas", "Recorded")),
                **_errors(400, 403, 503),
            },
        },
    },
    "/": {
        "get": {
            "tags": [PAGE_TAG],
            "operationId": "submitPage",
            "summary": "The page to submit a photo",
            "security": [{}],
            "responses": {
                "200": {"description": "HTML page.", "content": HTML},
                "503": {"description": "The database is unavailable.", "content": HTML,
                        "headers": {"Retry-After": RETRY_AFTER}},
            },
        },
    },
    "/r/{token}": {
        "get": {
            "tags": [PAGE_TAG],
            "operationId": "resultPage",
            "summary": "A job's progress and results page (the SMS link)",
            "security": [{}],
            "parameters": [_ref("parameters", "Token")],
            "responses": {
                "200": {"description": "HTML page.", "content": HTML,
                        "headers": {"Cache-Control": {"schema": {"type": "string"}}}},
                "404": {"description": "No such link.", "content": HTML},
                "503": {"description": "The database is unavailable.", "content": HTML,
                        "headers": {"Retry-After": RETRY_AFTER}},
            },
        },
    },
    "/openapi.json": {
        "get": {
            "tags": [OPS_TAG],
            "operationId": "openapi",
            "summary": "This document",
            "security": [{}],
            "responses": {"200": _ok("OpenAPI 3.1.", {"type": "object"})},
        },
    },
    "/docs": {
        "get": {
            "tags": [OPS_TAG],
            "operationId": "docs",
            "summary": "This document, rendered (Swagger UI)",
            "security": [{}],
            "responses": {"200": {"description": "HTML page.", "content": HTML}},
        },
    },
}

DESCRIPTION = f"""\
Submit a photo of a piece of clothing with one or more catalog categories; a background worker finds
similar products. Poll the job, follow its progress as Server-Sent Events, or wait for the SMS with its
result link.

**Authentication.** `Authorization: Bearer <api key>` (keys come from `searchjobs keys create`). Optional
for submits (unless SEARCHJOBS_ALLOW_ANONYMOUS=false) and status reads of anonymous jobs; required for
listings and the change feed. A client sees and changes only its own jobs; an admin key sees all.

**Errors.** Every error of the JSON API is `{{"error": {{"code": ..., "message": ...}}}}` with a stable
`code` (listed in the Error schema) and sometimes `field` or `job`. Refused input changes nothing. An
outage of Postgres or Redis answers 503 with Retry-After; no answer ever carries a stack trace.

**Rate limits.** Per API key, or per client IP without one (stricter); submits and other calls have
separate budgets. Limited answers carry RateLimit-Limit, RateLimit-Remaining and RateLimit-Reset; over the
limit, 429 with Retry-After. While Redis is down, requests with a key are not limited and requests without
one get 503 (result-link reads excepted).

**Limits.** At most {defaults.MAX_CATEGORIES} categories per job; images up to {MAX_IMAGE_BYTES} bytes
({', '.join(IMAGE_TYPES)}); request bodies up to {defaults.MAX_CONTENT_LENGTH} bytes.
"""


def _with_api_headers(paths: dict) -> dict:
    """Every /api answer may carry the RateLimit-* headers; errors that say when to retry carry Retry-After."""
    paths = copy.deepcopy(paths)
    for path, item in paths.items():
        if not path.startswith("/api/"):
            continue
        for method, operation in item.items():
            if method == "parameters":
                continue
            for response in operation["responses"].values():
                if "$ref" not in response:
                    response.setdefault("headers", {}).update(RATE_LIMIT_HEADERS)
    return paths


def _error_responses() -> dict:
    responses = {}
    for status, name in ERROR_RESPONSES.items():
        headers = dict(RATE_LIMIT_HEADERS)
        if status in (429, 503):
            headers["Retry-After"] = {**RETRY_AFTER, "required": True}
        if status == 405:
            headers["Allow"] = {"schema": {"type": "string"}}
        responses[name] = {"description": ERROR_DESCRIPTIONS[status], "headers": headers,
                           "content": _json(_ref("schemas", "Error"))}
    return responses


@functools.lru_cache(maxsize=4)
def build_document(categories: tuple[str, ...] | None = None) -> dict:
    """The document; with the catalog's category names when known (the submit bodies' enum)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "searchjobs",
            "version": __version__,
            "summary": "Durable visual-search jobs: Postgres is the truth; Redis a queue and a cache.",
            "description": DESCRIPTION,
        },
        "servers": [{"url": "/"}],
        "tags": [
            {"name": JOB_TAG, "description": "Submit, read, list, cancel, retry and delete search jobs."},
            {"name": STREAM_TAG, "description": "Server-Sent Events streams of a job's steps."},
            {"name": OPS_TAG, "description": "Probes, metrics, images, webhooks and this document."},
            {"name": PAGE_TAG, "description": "HTML pages for people."},
        ],
        "security": [{}, {"apiKey": []}],
        "paths": _with_api_headers(PATHS),
        "components": {
            "securitySchemes": {
                "apiKey": {"type": "http", "scheme": "bearer",
                           "description": "An API key from `searchjobs keys create` (sjk_...)."},
                "metricsToken": {"type": "http", "scheme": "bearer",
                                 "description": "SEARCHJOBS_METRICS_TOKEN."},
            },
            "schemas": component_schemas(categories),
            "parameters": PARAMETERS,
            "responses": _error_responses(),
        },
    }


DOCUMENT = build_document()


@translate_errors
def _catalog_categories() -> tuple[str, ...]:
    return tuple(sorted(runtime().catalog_facts.category_names()))


@bp.get("/openapi.json")
def openapi_json():
    try:
        categories = _catalog_categories()
    except DependencyUnavailable:  # still describe the API; the categories are in GET /api/categories
        categories = None
    response = jsonify(build_document(categories or None))
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


@bp.get("/docs")
def docs_page():
    response = make_response(render_template("docs.html"))
    response.headers["Content-Security-Policy"] = DOCS_CONTENT_SECURITY_POLICY
    return response


@bp.get("/docs/assets/<path:filename>")
def docs_asset(filename: str):
    """Swagger UI's own files, from the installed package (only the two the page loads)."""
    if filename not in DOCS_ASSETS:
        abort(404)
    return send_from_directory(str(swagger_ui_path), filename, max_age=DOCS_ASSET_MAX_AGE)
