"""The web's client-side deadline on Postgres's answers (searchjobs/db/deadlines.py), on the real Postgres.

A backend stopped with SIGSTOP stands in for a frozen Postgres: its socket stays open and the kernel
still acknowledges what is sent to it, so nothing but a client-side deadline ends the wait.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from searchjobs.db import deadlines
from searchjobs.db import engine as db
from searchjobs.web import health


@contextlib.contextmanager
def frozen_backend(engine: sa.Engine):
    """The backend of `engine`'s one pooled connection, stopped (SIGSTOP) for the block: a frozen Postgres."""
    with engine.connect() as conn:
        backend = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
    try:
        os.kill(backend, signal.SIGSTOP)
    except (ProcessLookupError, PermissionError):  # DATABASE_URL names a server this test cannot signal
        pytest.skip("the Postgres backend is not a local process this test may stop")
    try:
        yield backend
    finally:
        os.kill(backend, signal.SIGCONT)


@pytest.fixture
def deadline_engine(settings):
    engine = db.make_engine(settings.database_url, pool_size=1, max_overflow=0, statement_deadline=1.0)
    yield engine
    engine.dispose()


def test_a_statement_past_its_deadline_is_an_outage_and_costs_only_its_connection(deadline_engine):
    with deadline_engine.connect() as conn:
        started = time.monotonic()
        with pytest.raises(sa.exc.OperationalError) as caught:
            conn.execute(sa.text("SELECT pg_sleep(10)"))
        took = time.monotonic() - started
    assert isinstance(caught.value.orig, deadlines.DeadlineExceeded)
    assert db.is_outage(caught.value)  # the web answers 503 with Retry-After
    assert 0.9 < took < 3, took
    with deadline_engine.connect() as conn:  # the pool opens a new connection
        assert conn.execute(sa.text("SELECT 1")).scalar_one() == 1


def test_a_scope_deadline_is_tighter_and_ends_with_its_block(deadline_engine):
    with deadline_engine.connect() as conn:
        started = time.monotonic()
        with deadlines.within(0.3), pytest.raises(sa.exc.OperationalError):
            conn.execute(sa.text("SELECT pg_sleep(10)"))
        assert time.monotonic() - started < 0.9
    with deadline_engine.connect() as conn:  # outside the block the statement's own deadline applies again
        assert conn.execute(sa.text("SELECT pg_sleep(0.5), 1")).one()[1] == 1


def test_statements_within_their_deadline_are_untouched(settings):
    """Many short statements from several threads: none is cut, none waits for another's deadline."""
    engine = db.make_engine(settings.database_url, pool_size=4, statement_deadline=1.0)

    def work(_):
        with engine.begin() as conn:
            return conn.execute(sa.text("SELECT count(*) FROM catalog_items")).scalar_one()
    try:
        with ThreadPoolExecutor(4) as pool:
            counts = set(pool.map(work, range(200)))
    finally:
        engine.dispose()
    assert len(counts) == 1



def test_a_deadline_never_shuts_down_another_socket_on_its_closed_connections_fd():
    """libpq closes a failed connection's socket itself (end of file, a terminated backend) before the
    owner leaves execute and disarms; the fd number is then free, and the next socket opened in the process
    (a client's, another connection's) gets it. A deadline passing in that gap must not shut that one down."""
    watchdog = deadlines.Watchdog()
    connection_socket, _server = socket.socketpair()
    fd = connection_socket.fileno()
    token = watchdog.arm(fd, os.fstat(fd).st_ino, 0.2)
    connection_socket.close()  # as libpq does on end of file, with the deadline still armed
    other, other_peer = socket.socketpair()  # usually given the freed number (the lowest free fd), else:
    reused_by_dup2 = other.fileno() != fd
    if reused_by_dup2:
        os.dup2(other.fileno(), fd)
    try:
        time.sleep(0.6)
        assert not watchdog.disarm(token)  # the deadline passed
        other_peer.sendall(b"ping")
        assert os.read(fd, 4) == b"ping"  # not shut down
        os.write(fd, b"pong")
        assert other_peer.recv(4) == b"pong"
    finally:
        if reused_by_dup2:
            os.close(fd)
        other.close()
        other_peer.close()
        _server.close()


@pytest.fixture
def web(settings):
    """The web's runtime as create_app builds it for gunicorn: pre-ping and the statement deadline."""
    from searchjobs.runtime import Runtime
    from searchjobs.web import create_app

    rt = Runtime.from_settings(settings, pre_ping=True, statement_deadline=db.STATEMENT_DEADLINE)
    app = create_app(runtime=rt)
    app.config["TESTING"] = True
    yield app.test_client(), rt
    rt.close()


def test_a_pre_ping_of_a_frozen_backend_gives_up_after_the_ping_budget(settings):
    """The pooled connection leads to a frozen backend: the checkout's ping gives up after PING_SECONDS, not
    the statement deadline, and the statement runs on a new connection. With the statement deadline a request
    behind PgBouncer (which takes the reconnect at once) waited for two deadlines, 34 s, in the CI rehearsal."""
    engine = db.make_engine(settings.database_url, pool_size=1, max_overflow=0, pre_ping=True,
                            statement_deadline=10.0)
    try:
        with frozen_backend(engine) as backend:
            started = time.monotonic()
            with engine.connect() as conn:
                assert conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one() != backend
            took = time.monotonic() - started
        assert deadlines.PING_SECONDS - 0.1 < took < deadlines.PING_SECONDS + 1.5, took
    finally:
        engine.dispose()


def test_readyz_answers_within_its_budget_when_its_backend_is_frozen(web):
    """The probe's pooled connection leads to a frozen backend: /readyz answered only when the freeze
    ended (no deadline anywhere); now its ping gives up after READY_PROBE_DB_SECONDS, and the next probe,
    on a new connection, finds Postgres itself answering."""
    client, rt = web
    assert client.get("/readyz").status_code == 200
    with frozen_backend(rt.db):  # the one idle connection of the pool, which the probe will check out
        started = time.monotonic()
        with ThreadPoolExecutor(1) as pool:
            answer = pool.submit(client.get, "/readyz")
            response = answer.result(timeout=health.READY_PROBE_DB_SECONDS + db.CONNECT_TIMEOUT + 5)
        took = time.monotonic() - started
        # the budget is spent on the frozen connection (503), or what is left of it reaches a new one (200)
        assert response.status_code in (200, 503), response.get_json()
        if response.status_code == 503:
            assert response.headers["Retry-After"]
            assert response.get_json()["checks"]["database"].startswith("unavailable")
        assert took < health.READY_PROBE_DB_SECONDS + db.CONNECT_TIMEOUT + 1, took
        again = client.get("/readyz")  # the frozen connection was discarded
        assert again.status_code == 200, again.get_json()
