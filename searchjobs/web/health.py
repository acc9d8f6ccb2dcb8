"""Liveness and readiness probes."""

from __future__ import annotations

from flask import Blueprint, jsonify

from searchjobs import defaults
from searchjobs.catalog import loading
from searchjobs.db import deadlines
from searchjobs.db.engine import DB_ERRORS, ping
from searchjobs.queue import REDIS_UNAVAILABLE
from searchjobs.web.runtime import runtime

bp = Blueprint("health", __name__)

READY_PROBE_KEY = "searchjobs:readyz"  # a tiny key /readyz writes to see that Redis takes writes
READY_PROBE_TTL = 60  # seconds
# The probe's wait for Postgres's answers; a frozen Postgres then costs it this plus, when the pooled
# connection it cut must be replaced, one connect_timeout (db.engine.CONNECT_TIMEOUT): about 5 s, then 503
READY_PROBE_DB_SECONDS = 2.0


@bp.get("/healthz")
def healthz():
    """The process is alive and serving requests; says nothing of its dependencies."""
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz():
    """Can this process serve? Postgres reachable: 200. Without Postgres: 503 with Retry-After.

    While the catalog's first load runs, submits are refused (503 catalog_loading), so the process
    is not ready either: `checks.catalog` says how far the load is.
    A Postgres that does not answer (frozen) is unavailable after READY_PROBE_DB_SECONDS.
    Redis is reported, not required: without it submits still commit (the reconciler enqueues
    them later) and reads come from Postgres, so the body says `degraded` instead.
    A Redis that answers PING but refuses writes (full, read-only) counts as unavailable.
    """
    rt = runtime()
    checks = {}
    try:
        with deadlines.within(READY_PROBE_DB_SECONDS), rt.db.connect() as conn:
            ping(conn)
            load = loading.progress(conn)
        checks["database"] = "ok"
        checks["catalog"] = "ok" if load is None else f"loading: {load.loaded} of {load.total} items"
    except DB_ERRORS as exc:
        checks["database"] = f"unavailable: {type(getattr(exc, 'orig', None) or exc).__name__}"
    try:
        rt.redis.set(READY_PROBE_KEY, "1", ex=READY_PROBE_TTL)  # a write: PING passes on a full or read-only Redis
        checks["redis"] = "ok"
    except REDIS_UNAVAILABLE as exc:
        checks["redis"] = f"unavailable: {type(exc).__name__}"
    ready = checks["database"] == "ok" and checks.get("catalog") == "ok"
    status = ("ready" if checks["redis"] == "ok" else "degraded") if ready else "unavailable"
    response = jsonify({"status": status, "checks": checks})
    if not ready:
        response.status_code = 503
        response.headers["Retry-After"] = str(defaults.RETRY_AFTER_SECONDS)
    return response
