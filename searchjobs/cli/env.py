"""`searchjobs env`: the URLs of the running `searchjobs up`, for a shell and for RQ's own tools."""

from __future__ import annotations

import shlex

import click

from searchjobs.cli.common import fail
from searchjobs.config import Settings


@click.command("env")
def env() -> None:
    """Print DATABASE_URL and REDIS_URL of the running `searchjobs up`: eval "$(searchjobs env)".

    The instance is the one of SEARCHJOBS_DATA_DIR, else of ./.searchjobs.
    """
    from searchjobs.embedded import running_stack_urls

    data_dir = Settings.from_env().data_dir.resolve()
    urls = running_stack_urls(data_dir)
    if urls is None:
        fail(f"no `searchjobs up` with embedded servers is running on {data_dir} (start one, or set "
             f"SEARCHJOBS_DATA_DIR to its data folder)", code=1)
    for name, value in zip(("DATABASE_URL", "REDIS_URL"), urls, strict=True):
        click.echo(f"export {name}={shlex.quote(value)}")
