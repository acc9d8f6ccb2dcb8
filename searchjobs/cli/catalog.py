"""`searchjobs catalog`: the product catalog that searches run over."""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path

import click

from searchjobs.cli.common import fail, resolve_settings

DEMO_CATALOG_SIZE = 3000  # items `up` loads into an empty catalog, and `catalog demo` by default


def load_demo_with_progress(engine, size: int, seed: int = 0) -> int:
    """Load the demo catalog under a progress bar. Into an empty catalog, the load is announced
    (catalog.loading): the web shows it loading and refuses submits until it is done."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from searchjobs.catalog import loading
    from searchjobs.catalog import store as catalog
    from searchjobs.catalog.load import load_demo

    with engine.connect() as conn:
        first_load = catalog.count(conn) == 0
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with (loading.announced(engine, size) if first_load else contextlib.nullcontext(),
          Progress(*columns, transient=False) as progress):
        task = progress.add_task("Demo catalog", total=size)
        return load_demo(engine, size, seed, on_batch=lambda n: progress.advance(task, n))


@click.group()
def catalog() -> None:
    """The product catalog that searches run over."""


@catalog.command("demo")
@click.option("--size", default=DEMO_CATALOG_SIZE, show_default=True, type=click.IntRange(1, 1_000_000))
@click.option("--seed", default=0, show_default=True, type=int)
def catalog_demo(size: int, seed: int) -> None:
    """Build the demo catalog: procedurally generated product images (labelled "Demo catalog")."""
    from searchjobs.db import engine as dbm

    settings = resolve_settings()
    engine = dbm.make_engine(settings.database_url, pool_size=1)
    started = time.monotonic()
    loaded = load_demo_with_progress(engine, size, seed)
    click.echo(f"Demo catalog: {loaded} items loaded in {time.monotonic() - started:.1f}s")


@catalog.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def catalog_import(file: Path) -> None:
    """Import a CSV (sku,name,category,price,image); upserts by sku, skips bad rows with their line numbers."""
    from rich.progress import Progress

    from searchjobs.catalog.load import import_csv
    from searchjobs.db import engine as dbm
    from searchjobs.intake import IntakeLimits

    settings = resolve_settings()
    engine = dbm.make_engine(settings.database_url, pool_size=1)
    limits = IntakeLimits(allow_private=settings.image_allow_private, allow_loopback=settings.image_allow_loopback)
    try:
        with Progress() as progress:
            task = progress.add_task(f"Importing {file.name}", total=None)
            report = import_csv(engine, file, limits, on_batch=lambda n: progress.advance(task, n))
    except ValueError as exc:
        fail(str(exc))
    for line, reason in report.skipped:
        click.echo(f"line {line}: skipped: {reason}", err=True)
    click.echo(f"{report.loaded} items imported, {len(report.skipped)} rows skipped")
    if report.loaded == 0 and report.skipped:
        sys.exit(1)
