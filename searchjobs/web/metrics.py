"""GET /metrics for Prometheus, and the per-request HTTP counters.

Who may scrape: with SEARCHJOBS_METRICS_TOKEN set, a request carrying
`Authorization: Bearer <token>`; without it, only requests from a loopback
address (a scraper on the same machine, or a proxy there that adds its own
rules). Under gunicorn the values of every process sharing
PROMETHEUS_MULTIPROC_DIR are added up (searchjobs.web.gunicorn_conf sets it),
followed by the state read from Redis and Postgres at scrape time
(searchjobs.overview.LiveStateCollector).
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import time

from flask import Blueprint, Response, g, request
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest, multiprocess

from searchjobs import metrics
from searchjobs.overview import LiveStateCollector
from searchjobs.web.errors import error_response
from searchjobs.web.runtime import runtime

bp = Blueprint("metrics", __name__)


def _allowed() -> Response | None:
    """None if this request may read the metrics, else the error response."""
    token = runtime().settings.metrics_token
    if token:
        supplied = request.headers.get("Authorization", "")
        if hmac.compare_digest(supplied.encode(), f"Bearer {token}".encode()):
            return None
        return error_response(401, "unauthorized", "a metrics token is required",
                              headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
    try:
        address = ipaddress.ip_address(request.remote_addr or "")
    except ValueError:
        address = None
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1 on a dual-stack socket
    if address is not None and (address.is_loopback or (mapped is not None and mapped.is_loopback)):
        return None
    return error_response(403, "forbidden", "metrics are served to loopback only; set SEARCHJOBS_METRICS_TOKEN")


@bp.get("/metrics")
def scrape():
    refused = _allowed()
    if refused is not None:
        return refused
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        base = CollectorRegistry()
        multiprocess.MultiProcessCollector(base)
    else:
        base = REGISTRY
    live = CollectorRegistry()
    rt = runtime()
    live.register(LiveStateCollector(rt.redis, rt.db))
    return Response(generate_latest(base) + generate_latest(live), content_type=CONTENT_TYPE_LATEST)


@bp.before_app_request
def _start_timer():
    g.metrics_started = time.perf_counter()


@bp.after_app_request
def _count_request(response):
    # the rule ("/api/search-jobs/<job_id>"), not the path: one series per route, not per job
    route = request.url_rule.rule if request.url_rule is not None else "unmatched"
    metrics.HTTP_REQUESTS.labels(route, request.method, str(response.status_code)).inc()
    started = g.get("metrics_started")
    if started is not None:
        metrics.HTTP_DURATION.labels(route).observe(time.perf_counter() - started)
    return response
