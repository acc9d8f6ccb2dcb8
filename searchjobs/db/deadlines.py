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


# A pool's pre-ping (SELECT 1) that a healthy server answers in milliseconds: no answer in this long is an
# outage. With the statement deadline instead, a frozen Postgres behind PgBouncer cost a request two
# deadlines, 34 s: the ping's, then, PgBouncer taking the reconnect at once, the statement's
PING_SECONDS = 2.0


@contextlib.contextmanager
def within(seconds: float):
    """Every wait for Postgres in this block ends within `seconds` of entering it (a probe's budget), or
    sooner if an enclosing block's budget ends first."""
    deadline = time.monotonic() + seconds
    outer = _scope_deadline.get()
    token = _scope_deadline.set(deadline if outer is None else min(outer, deadline))
    try:
        yield
    finally:
        _scope_deadline.reset(token)


class Watchdog:
    """Shuts down the socket of each connection whose wait outlived its deadline; one thread per process."""

    def __init__(self):
        self._lock = threading.Condition()
        self._armed: dict[int, tuple[float, int, int]] = {}  # token -> (monotonic deadline, socket fd, its inode)
        self._tokens = itertools.count()
        self._pid = None  # the process whose thread runs: a forked child starts its own
        self._wakes_at = float("inf")  # when the thread next looks: an earlier deadline wakes it, others wait

    def arm(self, fd: int, inode: int, seconds: float) -> int:
        """`inode`: the socket's (os.fstat), which tells it apart from a later socket given the same fd."""
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
            self._armed[token] = (deadline, fd, inode)
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
                token, (deadline, fd, inode) = min(self._armed.items(), key=lambda item: item[1][0])
                left = deadline - time.monotonic()
                if left > 0:
                    self._wakes_at = deadline
                    self._lock.wait(left)
                    continue
                # under the lock: the owner cannot disarm and return the connection meanwhile
                del self._armed[token]
                _shut_down(fd, inode)


def _shut_down(fd: int, inode: int) -> None:
    """Shut down the socket `fd` names, if it is still the one armed: libpq closes a failed connection's
    socket itself (end of file, a terminated backend) before its owner leaves execute and disarms, and
    the freed number goes to the next socket the process opens (a client's, another connection's)."""
    try:
        own = os.dup(fd)  # a duplicate: libpq keeps (and later closes) its own fd; this one pins the socket
    except OSError:
        return  # closed, not reused
    try:
        if os.fstat(own).st_ino != inode:
            return  # closed and reused: not ours to shut down
        with socket.socket(fileno=own) as sock:
            own = None  # closed with sock
            sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # closed meanwhile
    finally:
        if own is not None:
            os.close(own)


WATCHDOG = Watchdog()


class DeadlineExceeded(psycopg2.OperationalError):
    """Postgres did not answer within the client-side deadline (the connection is closed)."""


class DeadlineConnection(extensions.connection):
    """A psycopg2 connection whose every wait for an answer ends by its deadline (`seconds`, set by a subclass)."""

    seconds: float = 0.0

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)  # connects: the socket is open from here on, and never replaced
        self.cursor_factory = DeadlineCursor
        self._socket_inode = os.fstat(self.fileno()).st_ino  # once per connection, not per statement (0.6 us)

    @contextlib.contextmanager
    def deadline(self):
        token = WATCHDOG.arm(self.fileno(), self._socket_inode, self.seconds)
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


def bound_pings(engine) -> None:
    """Give `engine`'s pre-ping (its dialect's do_ping, per engine) PING_SECONDS instead of the statement deadline."""
    ping = engine.dialect.do_ping

    def do_ping(dbapi_connection):
        with within(PING_SECONDS):
            return ping(dbapi_connection)

    engine.dialect.do_ping = do_ping
