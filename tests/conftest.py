"""Shared fixtures.

Integration tests run against real PostgreSQL and Valkey: the embedded servers,
started once per test session (or DATABASE_URL / REDIS_URL when both are set).
Each test starts from empty job tables and an empty Redis; the small demo
catalog is loaded once per session. With SEARCHJOBS_TEST_PGBOUNCER=1, the tests
talk to Postgres through PgBouncer in transaction pooling mode (tests/pgbouncer.py).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from searchjobs.config import Settings
from searchjobs.db.engine import normalise_url
from tests import pgbouncer

TEST_CATALOG_SIZE = 120  # demo items loaded once per session (12 per category)
TEST_SECRET = "test-secret-key"
JOB_TABLES = "search_job_events, notifications, search_jobs, images, api_clients, job_deletions, scheduler_locks"


@contextlib.contextmanager
def server_folder(name: str):
    """A folder for embedded servers (or PgBouncer), removed afterwards.

    Not under pytest's temporary folders: pytest keeps those 0700, and closes its root again
    whenever a session starts. As root the servers run as their own user, which must pass through
    every parent of their folder, and searchjobs opens none for it; /tmp is open.
    """
    path = Path(tempfile.mkdtemp(prefix=f"searchjobs-{name}-"))
    path.chmod(0o711)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def server_folder_for(request, name: str) -> Path:
    """server_folder for a fixture: removed after the fixture's own teardown."""
    folders = contextlib.ExitStack()
    request.addfinalizer(folders.close)
    return folders.enter_context(server_folder(name))


@pytest.fixture(scope="session")
def servers():
    """(database_url, redis_url, stack or None) for the whole session, migrated, with a small demo catalog."""
    from searchjobs.catalog.load import load_demo
    from searchjobs.db import engine as db
    from searchjobs.db import schema
    from searchjobs.embedded import EmbeddedStack

    external = os.environ.get("DATABASE_URL"), os.environ.get("REDIS_URL")
    stack = None
    stack_folder = contextlib.ExitStack()
    if all(external):
        database_url, redis_url = external
    else:
        folder = stack_folder.enter_context(server_folder("servers"))
        stack = EmbeddedStack(folder, fast_unsafe=True, persist_redis=False).start()
        database_url, redis_url = stack.postgres.url, stack.valkey.url
    schema.upgrade(database_url)  # migrations go to Postgres itself, never through PgBouncer
    engine = db.make_engine(database_url, pool_size=1)
    with engine.begin() as conn:
        conn.execute(sa.text(f"TRUNCATE {JOB_TABLES}, catalog_items RESTART IDENTITY CASCADE"))
    load_demo(engine, TEST_CATALOG_SIZE, seed=7)
    engine.dispose()
    bouncer = None
    if pgbouncer.wanted():
        direct = sa.engine.make_url(normalise_url(database_url))
        bouncer = pgbouncer.PgBouncer(stack_folder.enter_context(server_folder("pgbouncer")), (direct.host, direct.port),
                                      dbname=direct.database, user=direct.username,
                                      password=direct.password).start()
        database_url = bouncer.url
    yield database_url, redis_url, stack
    if bouncer is not None:
        bouncer.stop()
    if stack is not None:
        stack.stop()
    stack_folder.close()


@pytest.fixture
def settings(servers) -> Settings:
    database_url, redis_url, _ = servers
    env = {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "SECRET_KEY": TEST_SECRET,
        "PUBLIC_BASE_URL": "http://testserver",
        "SEARCHJOBS_IMAGE_ALLOW_LOOPBACK": "true",
        "SEARCHJOBS_LEASE_SECONDS": "20",
        "SEARCHJOBS_RATE_LIMITS": "off",  # tests/integration/test_rate_limits.py turns them on
    }
    return Settings.from_env(env)


@pytest.fixture
def runtime(settings):
    """A Runtime on clean tables and an empty Redis, installed for job functions."""
    from searchjobs.runtime import Runtime, install

    rt = Runtime.from_settings(settings)
    with rt.engine.begin() as conn:
        conn.execute(sa.text(f"TRUNCATE {JOB_TABLES} RESTART IDENTITY CASCADE"))
    rt.redis.flushall()
    install(rt)
    yield rt
    install(None)
    rt.close()


@pytest.fixture
def app(runtime):
    from searchjobs.web import create_app

    app = create_app(runtime=runtime)
    app.config["TESTING"] = True
    return app


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def run_jobs(runtime):
    """Run every queued job in this process (RQ SimpleWorker, burst mode)."""
    from searchjobs.worker.worker import run_worker

    def run(queues=None) -> bool:
        return run_worker(runtime, queues, burst=True, logging_level="WARNING")

    return run


def wait_for(predicate, timeout: float, what: str = "condition", interval: float = 0.1):
    """Poll `predicate` until it returns something truthy (returned), or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture
def fake_twilio():
    """A local fake of Twilio's Messages API on loopback (tests.fake_twilio)."""
    from tests.fake_twilio import FakeTwilio

    with FakeTwilio() as fake:
        yield fake


def demo_image_bytes(index: int = 0, category: str | None = None) -> bytes:
    """The PNG of one item of the session's demo catalog (seed 7)."""
    from searchjobs.catalog import demo

    for item in demo.generate_items(TEST_CATALOG_SIZE, seed=7):
        if category is None or item.category == category:
            if index == 0:
                return item.image_png
            index -= 1
    raise LookupError(category)


@pytest.fixture
def image_server():
    """A loopback HTTP server; `image_server(body, content_type)` returns a URL that serves `body`."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    routes: dict[str, tuple[bytes, str]] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's naming
            body, content_type = routes.get(self.path, (None, None))
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def serve(body: bytes, content_type: str = "image/png") -> str:
        path = f"/img{len(routes)}.png"
        routes[path] = (body, content_type)
        return f"http://127.0.0.1:{server.server_address[1]}{path}"

    yield serve
    server.shutdown()
    server.server_close()
