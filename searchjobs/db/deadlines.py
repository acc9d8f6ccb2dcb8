"""A client-side deadline on every wait for Postgres's answer (the web's engines use it).

Why: a Postgres that stops answering without closing its sockets (frozen, SIGSTOP; stuck on its
storage) is not noticed by anything else. The kernel still acknowledges our packets, so neither TCP
keepalives nor tcp_user_timeout fire; statement_timeout is enforced by the server that is stuck; libpq
has no query timeout. A request then waited as long as the freeze lasted, /readyz included, and a few
such requests held every pooled connection and thread.

How: psycopg2 connections whose cursors' execute and whose commit and rollback register a deadline
with one watchdog thread per process. When a deadline passes, the watchdog shuts the connection's
socket down: libpq, blocked in poll(), reads end-of-file and raises "server closed the connection
unexpectedly", an OperationalError that SQLAlchemy takes for a disconnect (it discards the connection)
and the web answers 503 with Retry-After. A statement that outlives its deadline costs its connection.

Connecting is not covered here: libpq's connect_timeout (db.engine.CONNECT_TIMEOUT) bounds it, per host.
(psycopg2's wait callback would cover both, but it makes every connect asynchronous, where libpq
ignores connect_timeout, and a host that never answers would no longer be skipped for the next one.)
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
import os
import socket
import threading
import time

import psycopg2
from psycopg2 import extensions

# A scope's own deadline (monotonic time), tighter than the per-statement one: the readiness probe's
_scope_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("searchjobs_db_deadline", default=None)


@contextlib.contextmanager
def within(seconds: float):
    """Every wait for Postgres in this block ends within `seconds` of entering it (a probe's budget)."""
    token = _scope_deadline.set(time.monotonic() + seconds)
    try:
        yield
    finally:
        _scope_deadline.reset(token)


class Watchdog:
    """Shuts down the socket of each connection whose wait outlived its deadline; one thread per process."""

    def __init__(self):
        self._lock = threading.Condition()
        self._armed: dict[int, tuple[float, int]] = {}  # token -> (monotonic deadline, socket fd)
        self._tokens = itertools.count()
        self._pid = None  # the process whose thread runs: a forked child starts its own
        self._wakes_at = float("inf")  # when the thread next looks: an earlier deadline wakes it, others wait

    def arm(self, fd: int, seconds: float) -> int:
        deadline = time.monotonic() + seconds
        scope = _scope_deadline.get()
        if scope is not None:
            deadline = min(deadline, scope)
        with self._lock:
            if self._pid != os.getpid():
                self._pid = os.getpid()
                self._armed.clear()
                threading.Thread(target=self._run, name="db-deadlines", daemon=True).start()
            token = next(self._tokens)
            self._armed[token] = (deadline, fd)
            if deadline < self._wakes_at:  # rarely: waking the thread per statement cost 36 us of 69 (SELECT 1)
                self._lock.notify()
        return token

    def disarm(self, token: int) -> bool:
        """Forget a deadline; False if it had already passed (the socket was shut down)."""
        with self._lock:
            return self._armed.pop(token, None) is not None

    def _run(self) -> None:
        with self._lock:
            while True:
                if not self._armed:
                    self._wakes_at = float("inf")
                    self._lock.wait()
                    continue
                token, (deadline, fd) = min(self._armed.items(), key=lambda item: item[1][0])
                left = deadline - time.monotonic()
                if left > 0:
                    self._wakes_at = deadline
                    self._lock.wait(left)
                    continue
                # under the lock: the owner cannot disarm, return the connection and have the fd reused meanwhile
                del self._armed[token]
                _shut_down(fd)


def _shut_down(fd: int) -> None:
    try:
        with socket.socket(fileno=os.dup(fd)) as sock:  # a duplicate: libpq keeps (and later closes) its own fd
            sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed


WATCHDOG = Watchdog()


class DeadlineExceeded(psycopg2.OperationalError):
    """Postgres did not answer within the client-side deadline (the connection is closed)."""


class DeadlineConnection(extensions.connection):
    """A psycopg2 connection whose every wait for an answer ends by its deadline (`seconds`, set by a subclass)."""

    seconds: float = 0.0

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.cursor_factory = DeadlineCursor

    @contextlib.contextmanager
    def deadline(self):
        token = WATCHDOG.arm(self.fileno(), self.seconds)
        try:
            yield
        except psycopg2.OperationalError as exc:
            if not WATCHDOG.disarm(token):
                raise DeadlineExceeded("no answer from the database within its deadline") from exc
            raise
        finally:
            WATCHDOG.disarm(token)  # whatever else ended the wait: never leave an fd armed

    def commit(self):
        with self.deadline():
            return super().commit()

    def rollback(self):
        with self.deadline():
            return super().rollback()


class DeadlineCursor(extensions.cursor):
    def execute(self, query, vars=None):
        with self.connection.deadline():
            return super().execute(query, vars)

    def executemany(self, query, vars_list):
        with self.connection.deadline():
            return super().executemany(query, vars_list)

    def callproc(self, procname, parameters=None):
        with self.connection.deadline():
            return super().callproc(procname, parameters)


def connection_factory(seconds: float) -> type[DeadlineConnection]:
    """The class to give psycopg2.connect(connection_factory=...) for waits of at most `seconds`."""
    return type("DeadlineConnection", (DeadlineConnection,), {"seconds": float(seconds)})
