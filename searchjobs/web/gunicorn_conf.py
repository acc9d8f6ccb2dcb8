"""Gunicorn settings for the `web` process (Procfile and `searchjobs web` share them).

Threaded workers: a live-progress stream (SSE) holds a thread, not a process,
while it waits; see README "Live progress" for how many one process holds.
"""

import os

bind = f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gthread"
threads = int(os.environ.get("WEB_THREADS", "16"))
timeout = 30  # a sync request that takes longer than this is killed
graceful_timeout = 25
keepalive = 5
accesslog = os.environ.get("SEARCHJOBS_ACCESS_LOG") or None
wsgi_app = "searchjobs.web:create_app()"
