"""Gunicorn settings for the `web` process (Procfile and `searchjobs web` share them).

Threaded workers: a live-progress stream (SSE) holds a thread, not a process,
while it waits; see README "Live progress" for how many one process holds.
"""

import json
import os
import shutil
import tempfile

from gunicorn import util as gunicorn_util

from searchjobs import logs

bind = f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gthread"
threads = int(os.environ.get("WEB_THREADS", "16"))
timeout = 30  # a sync request that takes longer than this is killed
graceful_timeout = 25
keepalive = 5
wsgi_app = "searchjobs.web:create_app()"
# the app's lines and gunicorn's own (errors, one access line per request) in our format;
# SEARCHJOBS_ACCESS_LOG=off drops the access lines
logconfig_dict = logs.gunicorn_logconfig(os.environ.get("SEARCHJOBS_LOG_FORMAT", "auto"),
                                         access=os.environ.get("SEARCHJOBS_ACCESS_LOG", "on") != "off")
# gunicorn >= 25.1 opens a control socket at one path per user (~/.gunicorn/gunicorn.ctl): a second
# instance would take over the first one's; nothing here uses gunicornc
control_socket_disable = True

# -- Prometheus multiprocess mode ----------------------------------------------
# Each gunicorn worker keeps its metric values in files in PROMETHEUS_MULTIPROC_DIR
# and /metrics adds them up. The variable must be set before any worker imports
# prometheus_client, hence here, in the master. Set it yourself (the same folder for
# the web, workers and scheduler of one machine) to see the workers' counters too;
# unset, the web gets a private temporary folder, removed when gunicorn exits.
_own_metrics_dir = None
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    _own_metrics_dir = tempfile.mkdtemp(prefix="searchjobs-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _own_metrics_dir
os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def on_starting(server):
    """Drop the files of processes that are gone (earlier runs), keeping those of running workers."""
    folder = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    for name in os.listdir(folder):
        pid = name.rsplit("_", 1)[-1].removesuffix(".db")
        if name.endswith(".db") and pid.isdigit() and not _pid_alive(int(pid)):
            os.remove(os.path.join(folder, name))


def child_exit(server, worker):
    """A gunicorn worker exited: its live gauges must stop counting (its counters still add up)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    if _own_metrics_dir:
        shutil.rmtree(_own_metrics_dir, ignore_errors=True)


# -- gunicorn's own refusals as JSON ---------------------------------------------------
# A request gunicorn cannot parse never reaches the app (a header over 8190 bytes: 431, a control character
# in a header value or a request line over 4094 bytes: 400 / 414). gunicorn wrote those as HTML; the API's
# rule is a JSON error with a stable code. Its workers write them through gunicorn.util.write_error, the one
# seam there is: this replaces it in the processes that load this file (the `web` process only).
GUNICORN_ERROR_CODES = {400: "bad_request", 403: "forbidden", 414: "uri_too_long",
                        431: "header_fields_too_large", 500: "internal_error"}  # any other: http_error


def write_json_error(sock, status_int: int, reason: str, mesg: str) -> None:
    code = GUNICORN_ERROR_CODES.get(status_int, "http_error")
    message = "internal error" if status_int >= 500 else (mesg or reason)
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"X-Content-Type-Options: nosniff\r\nContent-Length: {len(body)}\r\n\r\n")
    gunicorn_util.write_nonblock(sock, head.encode("latin-1") + body)


gunicorn_util.write_error = write_json_error
