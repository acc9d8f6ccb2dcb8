"""The product app plus one bench-only route, for bench/http.py's hello-world baseline.

    gunicorn --config python:searchjobs.web.gunicorn_conf 'bench.http_app:create()'

`/bench/hello` goes through the same Flask app, blueprints' hooks and security headers as
every API route, so the baseline is the framework and server cost with no Redis or Postgres.
"""

from __future__ import annotations

import sys

from searchjobs.web import create_app


def create():
    if "gevent" in sys.modules:  # bench/http.py --worker-class gevent: psycopg2 must yield while it waits
        from psycogreen.gevent import patch_psycopg

        patch_psycopg()
    app = create_app()

    @app.get("/bench/hello")
    def bench_hello():
        return "hello"

    return app
