"""What the embedded servers share: their error, free ports, private files."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from searchjobs.errors import SearchJobsError


class EmbeddedError(SearchJobsError):
    """An embedded server could not be started or stopped."""

    code = "embedded_error"


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read (0600 from the start, not chmod-ed after)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as f:
        f.write(text)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]
