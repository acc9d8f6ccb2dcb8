"""One instance per data folder: both servers, the lock that makes the instance one, and the state
file other processes find it by."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import time
from pathlib import Path

from searchjobs.embedded.base import EmbeddedError, write_private
from searchjobs.embedded.postgres import EmbeddedPostgres
from searchjobs.embedded.valkey import EmbeddedValkey

log = logging.getLogger(__name__)

STATE_FILE = "servers.json"  # under the data dir: the URLs of the running embedded servers
LOCK_FILE = "instance.lock"  # under the data dir: held (flock) by the one process running the servers


class InstanceRunning(EmbeddedError):
    """Another process runs the embedded servers of this data folder."""

    code = "instance_running"
    exit_code = 1  # the CLI's "cannot be done", not a usage error

    def __init__(self, data_dir: Path, holder: dict):
        where = ", ".join(part for part in (f"pid {holder.get('pid', '?')}", holder.get("web_url")) if part)
        super().__init__(f"searchjobs is already running on {data_dir} ({where}); stop it first, "
                         f"or give this one another SEARCHJOBS_DATA_DIR")
        self.holder = holder


class InstanceLock:
    """An exclusive flock on the data folder's lock file, held for the life of the instance.

    The kernel drops it when the holder exits, however it exits, so a lock left by a dead
    process is simply taken. The file says who holds it (pid, the web's URL once known).
    """

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self.path = data_dir / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> InstanceLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise InstanceRunning(self.data_dir, read_holder(self.data_dir) or {}) from None
        self._fd = fd
        self.describe()
        return self

    def describe(self, **details) -> None:
        """Record who holds the lock: our pid, plus `details` (the web's URL)."""
        assert self._fd is not None
        data = json.dumps({"pid": os.getpid(), **details}).encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None


def read_holder(data_dir: Path) -> dict | None:
    """Who runs the embedded servers of `data_dir` ({"pid", "web_url"?}), or None when nobody does."""
    path = Path(data_dir) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY)
    except (FileNotFoundError, NotADirectoryError):  # no lock file, or `data_dir` is no folder at all
        return None
    except OSError as exc:
        raise EmbeddedError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:  # held: someone runs the instance
            raw = os.read(fd, 4096)
            try:
                return json.loads(raw) if raw else {}
            except ValueError:
                return {}
        return None  # we could take it: nobody holds it
    finally:
        os.close(fd)  # also drops our shared lock, if we took one


class EmbeddedStack:
    """Both servers under one data folder, with a state file other processes can find."""

    def __init__(self, data_dir: Path, *, fast_unsafe: bool = False, persist_redis: bool = True,
                 host: str = "127.0.0.1", trust_network: str | None = None, lock: InstanceLock | None = None):
        self.data_dir = Path(data_dir).resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.postgres = EmbeddedPostgres(self.data_dir, fast_unsafe=fast_unsafe, host=host,
                                         trust_network=trust_network)
        self.valkey = EmbeddedValkey(self.data_dir, persist=persist_redis, host=host)
        # a lock the caller already holds (`up` takes it before anything else), or our own
        self.lock = lock or InstanceLock(self.data_dir)

    def start(self) -> EmbeddedStack:
        """Start both servers; InstanceRunning (and nothing touched) if another process runs them."""
        started = time.monotonic()
        if not self.lock.held:
            self.lock.acquire()
        try:
            self.postgres.start()
            try:
                self.valkey.start()
            except Exception:
                self.postgres.stop()
                raise
        except Exception:
            self.lock.release()
            raise
        write_private(self.data_dir / STATE_FILE, json.dumps(
            {"database_url": self.postgres.url, "redis_url": self.valkey.url, "pid": os.getpid()}))
        log.info("embedded servers ready in %.1fs", time.monotonic() - started)
        return self

    def stop(self) -> None:
        (self.data_dir / STATE_FILE).unlink(missing_ok=True)
        self.valkey.stop()
        self.postgres.stop()
        self.lock.release()


def running_stack_urls(data_dir: Path) -> tuple[str, str] | None:
    """URLs of the embedded servers a `searchjobs up` in `data_dir` is running, if any."""
    if read_holder(data_dir) is None:
        return None
    try:
        state = json.loads((Path(data_dir) / STATE_FILE).read_text())
        return state["database_url"], state["redis_url"]
    except (OSError, ValueError, KeyError):
        return None  # starting, or stopping
