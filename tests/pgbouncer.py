"""Debian's PgBouncer in transaction pooling mode, in front of a test Postgres.

`SEARCHJOBS_TEST_PGBOUNCER=1 pytest ...` makes the session's servers (tests/conftest.py) and the
fault tests' private stack (tests/faults/test_faults.py) put one in front of their Postgres: every
process then talks to PgBouncer, while migrations still go to Postgres directly (as the Procfile's
`release` should). `.ci/run` runs the core loop, SMS and fault tests this way once.

PgBouncer refuses to run as root; as root it runs as the embedded Postgres's system user.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from searchjobs.embedded import PG_SYSTEM_USER, free_port, run_as_server_user

ENV_FLAG = "SEARCHJOBS_TEST_PGBOUNCER"
START_TIMEOUT = 15.0  # seconds for PgBouncer to accept connections


def wanted() -> bool:
    return os.environ.get(ENV_FLAG, "").lower() in ("1", "true", "yes", "on")


class PgBouncer:
    """One pgbouncer process serving database `dbname` of `target` (host, port) on 127.0.0.1:`port`."""

    def __init__(self, data_dir: Path, target: tuple[str, int], dbname: str = "searchjobs",
                 user: str = "postgres", host: str = "127.0.0.1", password: str | None = None):
        self.dir = Path(data_dir)
        self.target = target
        self.dbname = dbname
        self.user = user
        self.host = host
        self.password = password  # what PgBouncer gives the server; its own clients are trusted (tests only)
        self.port = free_port(host)
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{self.dbname}"

    def start(self) -> PgBouncer:
        binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
        if not Path(binary).exists():
            raise RuntimeError("pgbouncer is not installed (apt-get install pgbouncer)")
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "userlist.txt").write_text(f'"{self.user}" ""\n')
        target_host, target_port = self.target
        # the server login: pgbouncer takes a password from the database line only with a user beside it
        server_password = f" user={self.user} password={self.password}" if self.password else ""
        (self.dir / "pgbouncer.ini").write_text(f"""\
[databases]
{self.dbname} = host={target_host} port={target_port} dbname={self.dbname}{server_password}

[pgbouncer]
listen_addr = {self.host}
listen_port = {self.port}
unix_socket_dir =
auth_type = trust
auth_file = {self.dir / "userlist.txt"}
pool_mode = transaction
max_client_conn = 1000
default_pool_size = 40
; a Postgres outage must answer errors in seconds, not after the defaults (15 s, 120 s)
server_login_retry = 1
server_connect_timeout = 3
query_wait_timeout = 5
logfile = {self.dir / "pgbouncer.log"}
pidfile = {self.dir / "pgbouncer.pid"}
""")
        run_as = run_as_server_user()
        if run_as:
            shutil.chown(self.dir, PG_SYSTEM_USER)
            for path in self.dir.iterdir():
                shutil.chown(path, PG_SYSTEM_USER)
        self.proc = subprocess.Popen([binary, str(self.dir / "pgbouncer.ini")], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, **run_as)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"pgbouncer exited: {self.log_tail()}")
            try:
                socket.create_connection((self.host, self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"pgbouncer did not listen within {START_TIMEOUT}s: {self.log_tail()}")

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return (self.dir / "pgbouncer.log").read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
