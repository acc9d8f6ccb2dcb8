"""What the commands share: their settings and runtime, how they fail, how they print.

Only click and the settings are imported here at module level, so that `searchjobs --help`
stays fast; everything else is imported by the command that needs it.
"""

from __future__ import annotations

import sys

import click

from searchjobs.config import Settings


def fail(message: str, code: int = 2) -> None:
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)


def resolve_settings() -> Settings:
    """Settings.for_process, or a clear error when neither the environment nor a running `up` gives URLs."""
    settings = Settings.for_process()
    if not settings.database_url or not settings.redis_url:
        fail("DATABASE_URL and REDIS_URL are not set and no `searchjobs up` is running in "
             f"{settings.data_dir.resolve()} (set SEARCHJOBS_DATA_DIR, or the two URLs)")
    return settings


def open_runtime(settings: Settings | None = None):
    from searchjobs.runtime import Runtime

    return Runtime.from_settings(settings or resolve_settings())


def when(value) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else ""


def to_json(value) -> str:
    import json

    return json.dumps(value, default=str, indent=2)


def table(headers: list[str], rows: list[list[str]], title: str | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    shown = Table(*headers, title=title)
    for row in rows:
        shown.add_row(*[str(c) for c in row])
    Console().print(shown)
