"""Structured logs: JSON lines in production, readable text on a terminal.

Details travel in `extra={...}` (job_id, attempt, ...). Phone numbers and
tokens are masked where they are logged; this formatter adds no data of its own.
Every process type logs through here: the CLI commands (worker, scheduler, ...)
call `configure`, and gunicorn takes `gunicorn_logconfig` (its own error and
access lines included) from searchjobs/web/gunicorn_conf.py.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Mapping
from datetime import UTC, datetime

# attributes every LogRecord has; anything else came from `extra=`
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}


def _extras(record: logging.LogRecord) -> dict:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            **_extras(record),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self):
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = _extras(record)
        if extras:
            line += "  " + " ".join(f"{k}={v}" for k, v in extras.items())
        return line


class StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time of each record (test runners swap it)."""

    def __init__(self):
        super().__init__()

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


# a result link's token in a request path: /r/<token>, /api/results/<token>[/...]; with doubled
# slashes too (/r//<token>, /api//results/<token>), which Werkzeug redirects to the route
_TOKEN_IN_PATH = re.compile(r"(/r/+|/api/+results/+)([^/?#]{0,4})[^/?#]*")


def mask_path(path: str) -> str:
    """A request path fit for a log line: a result token keeps its first 4 characters."""
    return _TOKEN_IN_PATH.sub(lambda m: f"{m.group(1)}{m.group(2)}\u2026", path)


class AccessLine(logging.Filter):
    """Gunicorn's access record as our fields: method, path (tokens masked), status, duration_ms, remote_addr.

    Gunicorn hands its access logger a dict of every request atom, headers included
    (Authorization, X-API-Key): only the fields above are kept, and the query string is dropped.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if not isinstance(record.args, Mapping):
            return True
        atoms = record.args
        record.method, record.path = atoms["m"], mask_path(atoms["U"] or "")
        status = str(atoms["s"])
        record.status = int(status) if status.isdigit() else status
        record.duration_ms = atoms["M"]
        record.remote_addr = atoms["h"]
        record.msg, record.args = "%s %s %s", (record.method, record.path, record.status)
        return True


def resolve_format(fmt: str) -> str:
    """"json" or "text": "auto" is text on a terminal, JSON otherwise."""
    if fmt not in ("auto", "json", "text"):
        raise ValueError(f"log format must be auto, json or text, not {fmt!r}")
    if fmt == "auto":
        return "text" if sys.stderr.isatty() else "json"
    return fmt


def _formatter(fmt: str) -> logging.Formatter:
    return JsonFormatter() if resolve_format(fmt) == "json" else TextFormatter()


# loggers that are too talkative for us at INFO/DEBUG
_QUIET = {
    "urllib3": "INFO",  # full request URLs (phone numbers in Twilio look-ups) at DEBUG
    "alembic.runtime.plugins": "WARNING",  # one line per plugin, every start
}


def gunicorn_logconfig(fmt: str = "auto", level: str = "INFO", access: bool = True) -> dict:
    """A logging.config.dictConfig for gunicorn: the app's records and gunicorn's own error and
    access lines all go through one handler and formatter, as in every other process type."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"searchjobs": {"()": _formatter, "fmt": fmt}},
        "filters": {"access": {"()": AccessLine}},
        "handlers": {"stderr": {"()": StderrHandler, "formatter": "searchjobs"}},
        "root": {"handlers": ["stderr"], "level": level},
        "loggers": {
            "gunicorn.error": {"handlers": ["stderr"], "level": level, "propagate": False},
            "gunicorn.access": {"handlers": ["stderr"], "filters": ["access"], "propagate": False,
                                "level": "INFO" if access else "WARNING"},
            **{name: {"level": quiet} for name, quiet in _QUIET.items()},
        },
    }


def configure(fmt: str = "auto", level: str = "INFO") -> None:
    """Install our handler on the root logger (replacing an earlier one of ours, keeping others).

    fmt: "json", "text" or "auto" (text on a terminal).
    """
    handler = StderrHandler()
    handler.setFormatter(_formatter(fmt))
    root = logging.getLogger()
    root.handlers[:] = [h for h in root.handlers if not isinstance(h, StderrHandler)] + [handler]
    root.setLevel(level)
    for name, quiet in _QUIET.items():
        logging.getLogger(name).setLevel(quiet)
