"""Liveness and readiness probes."""

from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, jsonify

from searchjobs import defaults
from searchjobs.queue import REDIS_ERRORS
from searchjobs.web.runtime import runtime

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    """The process is alive and serving requests; says nothing of its dependencies."""
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz():
    """Database and Redis reachable, each reported. 503 (with Retry-After) if either is not."""
    rt = runtime()
    checks = {}
    try:
        with rt.db.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        checks["database"] = "ok"
    except sa.exc.DBAPIError as exc:
        checks["database"] = f"unavailable: {type(exc.orig).__name__}"
    try:
        rt.redis.ping()
        checks["redis"] = "ok"
    except REDIS_ERRORS as exc:
        checks["redis"] = f"unavailable: {type(exc).__name__}"
    ready = all(v == "ok" for v in checks.values())
    response = jsonify({"status": "ready" if ready else "unavailable", "checks": checks})
    if not ready:
        response.status_code = 503
        response.headers["Retry-After"] = str(defaults.RETRY_AFTER_SECONDS)
    return response
