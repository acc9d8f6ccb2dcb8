"""JSON errors with stable codes; 503 with Retry-After when a dependency is down; never a traceback."""

from __future__ import annotations

import logging

import sqlalchemy as sa
from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

from searchjobs import defaults
from searchjobs.db.engine import is_outage
from searchjobs.errors import Conflict, DependencyUnavailable, NotFound, SearchJobsError, ValidationError

log = logging.getLogger(__name__)

HTTP_CODES = {  # stable codes for the errors Flask/werkzeug raise themselves
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "unprocessable",
    429: "rate_limited",
    500: "internal_error",
    503: "service_unavailable",
}


class ApiError(SearchJobsError):
    """An error response: status, stable code, message, optional extra fields."""

    def __init__(self, status: int, code: str, message: str, **extra):
        super().__init__(message, code=code)
        self.status = status
        self.extra = extra


def error_response(status: int, code: str, message: str, headers: dict | None = None, **extra):
    body = {"error": {"code": code, "message": message, **extra}}
    response = jsonify(body)
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def unavailable(message: str = "a backing service is unavailable; try again shortly"):
    return error_response(503, "service_unavailable", message,
                          headers={"Retry-After": str(defaults.RETRY_AFTER_SECONDS)})


def init_app(app: Flask) -> None:
    @app.before_request
    def _refuse_nul_in_path():
        # no route takes a NUL byte, and Postgres refuses one in a string: answer before any lookup
        if "\x00" in request.path:
            return error_response(404, "not_found", "no such path")
        return None

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        headers = {"Retry-After": str(defaults.RETRY_AFTER_SECONDS)} if exc.status == 503 else None
        return error_response(exc.status, exc.code, exc.message, headers=headers, **exc.extra)

    @app.errorhandler(ValidationError)
    def _validation(exc: ValidationError):
        extra = {"field": exc.field} if exc.field else {}
        return error_response(exc.status, exc.code, exc.message, **extra)

    @app.errorhandler(NotFound)
    def _not_found(exc: NotFound):
        return error_response(404, exc.code, exc.message)

    @app.errorhandler(Conflict)
    def _conflict(exc: Conflict):
        return error_response(409, exc.code, exc.message)

    @app.errorhandler(DependencyUnavailable)
    def _dependency(exc: DependencyUnavailable):
        log.warning("dependency unavailable: %s", exc)
        return unavailable()

    @app.errorhandler(sa.exc.DBAPIError)
    @app.errorhandler(sa.exc.TimeoutError)  # the pool had no free connection within pool_timeout
    def _database(exc: sa.exc.DBAPIError | sa.exc.TimeoutError):
        if is_outage(exc):
            log.warning("database unavailable: %s", type(getattr(exc, "orig", None) or exc).__name__)
            return unavailable("the database is unavailable; try again shortly")
        log.exception("database error")
        return error_response(500, "internal_error", "internal error")

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        status = exc.code or 500
        code = HTTP_CODES.get(status, "http_error")
        message = exc.description if status < 500 else "internal error"
        cap = request.max_content_length
        if status == 413 and cap and (request.content_length is None or request.content_length > cap):
            # werkzeug's text names no limit
            message = f"the request body is larger than {request.max_content_length} bytes"
        headers = {}
        if status == 405 and getattr(exc, "valid_methods", None):
            headers["Allow"] = ", ".join(exc.valid_methods)
        if request.path.startswith("/api/") or request.accept_mimetypes.best == "application/json" or status >= 500:
            return error_response(status, code, message, headers=headers)
        return exc

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal_error", "internal error")
