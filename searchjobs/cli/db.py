"""`searchjobs db`: the database schema."""

from __future__ import annotations

import sys

import click

from searchjobs.cli.common import resolve_settings


@click.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.argument("revision", default="head")
def db_upgrade(revision: str) -> None:
    """Apply migrations (the Procfile's release step)."""
    from searchjobs.db import schema

    settings = resolve_settings()
    schema.upgrade(settings.database_url, revision)
    click.echo(f"database at {schema.current_revision(settings.database_url)}")


@db.command("current")
def db_current() -> None:
    """Show the applied migration."""
    from searchjobs.db import schema

    settings = resolve_settings()
    current = schema.current_revision(settings.database_url)
    head = schema.head_revision()
    click.echo(f"current: {current or 'none'}  head: {head}")
    if current != head:
        sys.exit(1)
