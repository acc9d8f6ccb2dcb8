"""The embedded default, as `searchjobs up` uses it: one instance per data folder, a password, no open doors.

Each test starts its own servers in its own data folder (initdb included), as a first `up` does.
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import psycopg2
import pytest

from searchjobs import embedded
from searchjobs.embedded import EmbeddedError, EmbeddedStack, InstanceRunning, read_holder, running_stack_urls
from tests.conftest import server_folder

pytestmark = pytest.mark.slow


@pytest.fixture
def data_dir():
    with server_folder("embedded") as folder:
        yield folder / "data"


def connects(url: str) -> bool:
    psycopg2.connect(url, connect_timeout=3).close()
    return True


def test_a_second_instance_on_the_same_data_folder_is_refused_and_the_first_is_unharmed(data_dir):
    first = EmbeddedStack(data_dir, fast_unsafe=True, persist_redis=False).start()
    try:
        first.lock.describe(web_url="http://127.0.0.1:8000")
        urls = running_stack_urls(data_dir)
        assert urls == (first.postgres.url, first.valkey.url)

        second = EmbeddedStack(data_dir, fast_unsafe=True, persist_redis=False)
        with pytest.raises(InstanceRunning) as refused:
            second.start()
        message = str(refused.value)
        assert f"pid {os.getpid()}" in message and "http://127.0.0.1:8000" in message and str(data_dir) in message

        # nothing of the first was touched: its servers answer, its state file is there
        assert connects(first.postgres.url)
        assert first.valkey._server is not None and running_stack_urls(data_dir) == urls
    finally:
        first.stop()
    assert read_holder(data_dir) is None and running_stack_urls(data_dir) is None


def test_a_lock_left_by_a_killed_process_is_taken_over(data_dir):
    data_dir.mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from searchjobs.embedded import InstanceLock
        InstanceLock(Path({str(data_dir)!r})).acquire()
        print("held", flush=True)
        time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert read_holder(data_dir) == {"pid": holder.pid}
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        holder.stdout.close()
    assert read_holder(data_dir) is None  # the kernel dropped the lock with the process
    stack = EmbeddedStack(data_dir, fast_unsafe=True, persist_redis=False).start()
    try:
        assert read_holder(data_dir) == {"pid": os.getpid()}
    finally:
        stack.stop()


def test_postgres_asks_for_a_password_kept_private_in_the_data_folder(data_dir):
    stack = EmbeddedStack(data_dir, fast_unsafe=True, persist_redis=False).start()
    try:
        pg = stack.postgres
        with pytest.raises(psycopg2.OperationalError, match="password"):
            psycopg2.connect(host=pg.host, port=pg.port, user="postgres", dbname="searchjobs", connect_timeout=3)
        with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
            psycopg2.connect(host=pg.host, port=pg.port, user="postgres", dbname="searchjobs", password="guess",
                             connect_timeout=3)
        assert connects(pg.url)
        for private in (pg.password_file, data_dir / embedded.STATE_FILE, data_dir / embedded.LOCK_FILE):
            assert stat.S_IMODE(private.stat().st_mode) == 0o600, private
        assert stat.S_IMODE(pg.pgdata.stat().st_mode) == 0o700  # the data and the Unix socket in it
        sockets = list(pg.pgdata.glob(".s.PGSQL.*[0-9]"))
        assert sockets and all(stat.S_IMODE(s.stat().st_mode) == 0o700 for s in sockets)
        assert not list(data_dir.glob(".initdb-password*"))
    finally:
        stack.stop()


def test_a_cluster_made_without_a_password_gets_one_at_its_next_start(data_dir):
    """A data folder from an earlier release: initdb --auth=trust, no password file."""
    pg = embedded.EmbeddedPostgres(data_dir)
    pg._check_reachable()
    pg.pgdata.mkdir(parents=True)
    pg.pgdata.chmod(0o700)
    if os.geteuid() == 0:
        shutil.chown(pg.pgdata, embedded.PG_SYSTEM_USER, embedded.PG_SYSTEM_USER)
    pg._pg(pg.bin("initdb"), "-D", str(pg.pgdata), "-U", "postgres", "--auth=trust", "--locale=C")
    assert not pg.password_file.exists()

    stack = EmbeddedStack(data_dir, fast_unsafe=True, persist_redis=False).start()
    try:
        assert stat.S_IMODE(stack.postgres.password_file.stat().st_mode) == 0o600
        with pytest.raises(psycopg2.OperationalError, match="password"):
            psycopg2.connect(host=stack.postgres.host, port=stack.postgres.port, user="postgres",
                             dbname="searchjobs", connect_timeout=3)
        assert connects(stack.postgres.url)
    finally:
        stack.stop()


@pytest.mark.skipif(os.geteuid() != 0, reason="the server's own user exists only when we run as root")
def test_as_root_a_closed_parent_is_named_and_left_closed(data_dir):
    closed = data_dir.parent / "home"  # like /root: 0700, everything above it passable
    closed.mkdir(mode=0o700)
    closed.chmod(0o700)
    with pytest.raises(EmbeddedError, match=f"{closed} is closed to it") as refused:
        EmbeddedStack(closed / "project" / ".searchjobs", fast_unsafe=True, persist_redis=False).start()
    assert "SEARCHJOBS_DATA_DIR" in str(refused.value)
    assert stat.S_IMODE(closed.stat().st_mode) == 0o700  # not opened for the server's user
    assert not (closed / "project" / ".searchjobs" / "postgres").exists()


def test_start_changes_modes_inside_the_data_folder_only(data_dir, monkeypatch):
    changed: list[Path] = []
    real_chmod, real_chown = os.chmod, shutil.chown

    def chmod(path, mode, *args, **kwargs):
        changed.append(Path(path).resolve())
        return real_chmod(path, mode, *args, **kwargs)

    def chown(path, *args, **kwargs):
        changed.append(Path(path).resolve())
        return real_chown(path, *args, **kwargs)

    monkeypatch.setattr(os, "chmod", chmod)  # Path.chmod goes through os.chmod
    monkeypatch.setattr(shutil, "chown", chown)
    stack = EmbeddedStack(data_dir, fast_unsafe=True, persist_redis=False).start()
    try:
        outside = [path for path in changed if path != data_dir.resolve() and data_dir.resolve() not in path.parents]
        assert changed and not outside
        if os.geteuid() == 0:  # the server's user runs the binaries from the data folder
            assert data_dir.resolve() in Path(stack.postgres.bin("postgres")).resolve().parents
    finally:
        stack.stop()


def test_valkey_asks_for_a_password_kept_private_in_the_data_folder(data_dir):
    """Without one, any local user could queue an RQ job, whose payload RQ unpickles (their code, our user)."""
    import redis

    stack = EmbeddedStack(data_dir, fast_unsafe=True, persist_redis=False).start()
    try:
        valkey = stack.valkey
        anonymous = redis.Redis(host=valkey.host, port=valkey.port, socket_timeout=3)
        with pytest.raises(redis.exceptions.AuthenticationError):
            anonymous.rpush("rq:queue:searches", "not-ours")
        anonymous.close()
        client = redis.Redis.from_url(valkey.url, socket_timeout=3)
        assert client.ping() and client.llen("rq:queue:searches") == 0
        client.close()
        assert stat.S_IMODE(valkey.password_file.stat().st_mode) == 0o600
        assert stat.S_IMODE(valkey.folder.stat().st_mode) == 0o700  # valkey.conf holds the password
        assert running_stack_urls(data_dir)[1] == valkey.url
    finally:
        stack.stop()


def _valkeys_on(folder: Path) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if (proc.name.isdigit() and b"valkey-server" in (proc / "cmdline").read_bytes()
                    and Path(os.readlink(proc / "cwd")).resolve() == folder.resolve()
                    and (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"):
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def test_a_valkey_left_by_a_killed_process_is_stopped_before_a_new_one_starts(data_dir):
    """`kill -9` of `up` leaves its (daemonised) Valkey running: the next start must not run a second
    server on the same append-only files, nor lose what the first one holds."""
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from pathlib import Path
        import redis
        from searchjobs.embedded import EmbeddedStack
        stack = EmbeddedStack(Path({str(data_dir)!r}), fast_unsafe=True).start()
        redis.Redis.from_url(stack.valkey.url).set("kept", "yes")
        print("started", flush=True)
        time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "started"
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        holder.stdout.close()
    folder = data_dir / "valkey"
    leftover = _valkeys_on(folder)
    assert len(leftover) == 1  # the daemon outlived its parent

    import redis

    stack = EmbeddedStack(data_dir, fast_unsafe=True).start()
    try:
        assert _valkeys_on(folder) == [stack.valkey._server.pid] != leftover
        assert redis.Redis.from_url(stack.valkey.url).get("kept") == b"yes"  # written out at its SIGTERM
    finally:
        stack.stop()
    assert _valkeys_on(folder) == []


def test_a_lost_postgres_password_is_said_plainly_and_nothing_is_left_running(data_dir):
    stack = EmbeddedStack(data_dir, fast_unsafe=True, persist_redis=False).start()
    password_file = stack.postgres.password_file
    kept = password_file.read_text()
    stack.stop()

    password_file.unlink()
    with pytest.raises(EmbeddedError, match=f"{password_file} is missing") as missing:
        EmbeddedStack(data_dir, fast_unsafe=True, persist_redis=False).start()
    assert "Put the file back" in str(missing.value) and not password_file.exists()  # no new, wrong one
    assert not embedded.EmbeddedPostgres(data_dir).is_running()
    assert read_holder(data_dir) is None

    password_file.write_text("changed\n")
    with pytest.raises(EmbeddedError, match="is refused"):
        EmbeddedStack(data_dir, fast_unsafe=True, persist_redis=False).start()
    assert not embedded.EmbeddedPostgres(data_dir).is_running()

    password_file.write_text(kept)
    EmbeddedStack(data_dir, fast_unsafe=True, persist_redis=False).start().stop()


def test_the_urls_of_a_data_folder_that_is_a_file_are_none(data_dir):
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    data_dir.write_text("not a folder")
    assert read_holder(data_dir) is None and running_stack_urls(data_dir) is None
