"""`searchjobs catalog`: the product catalog that searches run over."""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path

import click

from searchjobs.cli.common import fail, resolve_settings

DEMO_CATALOG_SIZE = 3000  # items `up` loads into an empty catalog, and `catalog demo` by default


def configured_embedders(settings):
    """The embedder SEARCHJOBS_EMBEDDER names, loaded and checked (a model that does not fit: ConfigError)."""
    from searchjobs.catalog.embedders import Embedders, load_embedder

    return Embedders(load_embedder(settings.embedder))


def load_demo_with_progress(engine, size: int, embedders, seed: int = 0) -> int:
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
        return load_demo(engine, size, seed, on_batch=lambda n: progress.advance(task, n), embedders=embedders)


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
    embedders = configured_embedders(settings)
    engine = dbm.make_engine(settings.database_url, pool_size=1)
    started = time.monotonic()
    loaded = load_demo_with_progress(engine, size, embedders, seed)
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
    embedders = configured_embedders(settings)
    engine = dbm.make_engine(settings.database_url, pool_size=1)
    limits = IntakeLimits(allow_private=settings.image_allow_private, allow_loopback=settings.image_allow_loopback)
    try:
        with Progress() as progress:
            task = progress.add_task(f"Importing {file.name}", total=None)
            report = import_csv(engine, file, limits, on_batch=lambda n: progress.advance(task, n),
                                embedders=embedders)
    except ValueError as exc:
        fail(str(exc))
    for line, reason in report.skipped:
        click.echo(f"line {line}: skipped: {reason}", err=True)
    click.echo(f"{report.loaded} items imported, {len(report.skipped)} rows skipped")
    if report.loaded == 0 and report.skipped:
        sys.exit(1)


@catalog.command("reembed")
@click.option("--embedder", "spec", default=None, metavar="SPEC",
              help="'descriptor' or 'onnx:/path/model.onnx' (default: SEARCHJOBS_EMBEDDER).")
@click.option("--batch", default=64, show_default=True, type=click.IntRange(1, 4096),
              help="Items embedded and committed per batch.")
def catalog_reembed(spec: str | None, batch: int) -> None:
    """Compute every item's vector with an embedder, then switch searches to it.

    The current vectors keep serving searches until every item has a new one; then the embedder
    becomes the active one for every worker at once. Interrupted, it resumes where it stopped.
    """
    from searchjobs.catalog.embedders import load_embedder
    from searchjobs.db import engine as dbm

    settings = resolve_settings()
    embedder = load_embedder(spec, setting="--embedder") if spec else load_embedder(settings.embedder)
    engine = dbm.make_engine(settings.database_url, pool_size=1)
    started = time.monotonic()
    report = reembed_with_progress(engine, embedder, settings, batch)
    took = time.monotonic() - started
    echo_not_embedded(report)
    summary = f"{report.embedded} vectors computed with {embedder.name} in {took:.1f}s"
    if report.failed:
        fail(f"{summary}; {len(report.failed)} items could not be embedded, so searches still use "
             f"{report.active} (fix them and run this again: it resumes)", code=1)
    if report.switched:
        click.echo(f"{summary}; every item has one: searches now use {embedder.name}")
    else:
        click.echo(f"{summary}; {embedder.name} was already the active embedder")


def reembed_with_progress(engine, embedder, settings, batch: int = 64):
    """catalog.load.reembed under a progress bar (`catalog reembed`, and `up` for a stale catalog)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from searchjobs.catalog.load import reembed
    from searchjobs.intake import IntakeLimits

    limits = IntakeLimits(allow_private=settings.image_allow_private, allow_loopback=settings.image_allow_loopback)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("items"),
               TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns) as progress:
        task = progress.add_task(f"Reembedding with {embedder.name}", total=None)

        def start(items: int, already: int) -> None:
            progress.update(task, total=items, completed=already)
            if already:
                progress.console.print(f"Resuming: {already} of {items} items already have a vector "
                                       f"from {embedder.name}")

        return reembed(engine, embedder, limits, batch=batch, on_start=start,
                       on_batch=lambda n: progress.advance(task, n))


def reembed_if_stale(database_url: str, settings):
    """Bring a catalog whose vectors come from another embedder than the configured one (a data folder or
    database of an earlier release, whose descriptor has changed since) to the configured one, under a
    progress bar; the old vectors keep serving meanwhile. The report, or None if nothing was stale."""
    from searchjobs.catalog import store as catalog
    from searchjobs.db import engine as dbm

    embedder = configured_embedders(settings).configured
    engine = dbm.make_engine(database_url, pool_size=1)
    try:
        with engine.connect() as conn:
            active = catalog.active_embedder(conn).name
        if active == embedder.name:
            return None
        click.echo(f"The catalog's vectors come from {active}; searches use {embedder.name}: reembedding ...")
        return reembed_with_progress(engine, embedder, settings)
    finally:
        engine.dispose()


def echo_not_embedded(report) -> None:
    """Each item a reembed could not embed, and why, on stderr."""
    for sku, reason in sorted(report.failed.items()):
        click.echo(f"{sku}: not embedded: {reason}", err=True)
