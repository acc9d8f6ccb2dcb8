"""`searchjobs db`: the database schema; `searchjobs release`: what a deploy runs before its processes start."""

from __future__ import annotations

import sys

import click

from searchjobs.cli.common import fail, resolve_settings


@click.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.argument("revision", default="head")
def db_upgrade(revision: str) -> None:
    """Apply migrations (the first thing `searchjobs release`, the Procfile's release step, does)."""
    _upgrade(resolve_settings(), revision)


def _upgrade(settings, revision: str) -> None:
    from searchjobs.db import schema

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


@click.command("release")
def release() -> None:
    """The Procfile's release step: apply migrations, then, if the catalog's vectors come from another
    embedder than this release's (its descriptor version changed), reembed it.

    The running release's workers keep searching the old vectors until the switch; this release's
    workers, which compute only their own version, can search as soon as they start. Exits 1 if an item
    cannot be embedded: nothing switched, and this release's workers could not search.
    """
    from searchjobs.cli.catalog import echo_not_embedded, reembed_if_stale

    settings = resolve_settings()
    _upgrade(settings, "head")
    report = reembed_if_stale(settings.database_url, settings)
    if report is None:
        return
    echo_not_embedded(report)
    if report.failed:
        fail(f"{len(report.failed)} items could not be embedded, so searches still use {report.active}, which "
             f"this release cannot compute: fix them and run `searchjobs release` again (it resumes)", code=1)
    click.echo(f"{report.embedded} vectors computed; searches now use {report.active}")
