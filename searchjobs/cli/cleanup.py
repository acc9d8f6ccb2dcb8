"""`searchjobs cleanup`: the retention cleanup, run by hand."""

from __future__ import annotations

import click

from searchjobs.cli.common import fail, open_runtime


@click.command()
@click.option("--dry-run", is_flag=True, help="Count what would be deleted; delete nothing.")
@click.option("--days", type=click.IntRange(0), default=None, help="Retention (default SEARCHJOBS_RETENTION_DAYS).")
def cleanup(dry_run: bool, days: int | None) -> None:
    """Delete finished jobs older than the retention period, with their events, images and SMS rows."""
    from searchjobs.worker.cleanup import cleanup as run_cleanup

    runtime = open_runtime()
    report = run_cleanup(runtime, retention_days=days, dry_run=dry_run)
    if report.skipped:
        fail("another cleanup is running (the scheduler's, or a second `searchjobs cleanup`); nothing deleted",
             code=1)
    verb = "would delete" if dry_run else "deleted"
    click.echo(f"{verb}: {report.jobs} jobs, {report.events} events, {report.notifications} notifications, "
               f"{report.images} images")
