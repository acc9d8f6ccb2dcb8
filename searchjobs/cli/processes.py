"""The process types of the Procfile: `searchjobs web`, `worker` and `scheduler`."""

from __future__ import annotations

import os
import signal
import sys
import threading

import click

from searchjobs import defaults
from searchjobs.cli.common import open_runtime, resolve_settings


@click.command()
@click.option("--host", default="0.0.0.0", show_default=True)
@click.option("--port", default=None, type=int, help="Default: $PORT, else 8000.")
def web(host: str, port: int | None) -> None:
    """Serve the web app with gunicorn (WEB_CONCURRENCY processes)."""
    settings = resolve_settings()
    settings.check_secret()
    os.environ["DATABASE_URL"], os.environ["REDIS_URL"] = settings.require_urls()
    os.environ["HOST"] = host
    os.environ["PORT"] = str(port or os.environ.get("PORT") or 8000)
    os.execvp(sys.executable, [sys.executable, "-m", "gunicorn", "--config", "python:searchjobs.web.gunicorn_conf"])


@click.command()
@click.option("--queues", "-q", multiple=True, help=f"Queues to listen on (default: {', '.join(defaults.ALL_QUEUES)}).")
@click.option("--burst", is_flag=True, help="Stop when the queues are empty.")
@click.option("--max-jobs", type=int, default=None, help="Stop after this many jobs.")
def worker(queues: tuple[str, ...], burst: bool, max_jobs: int | None) -> None:
    """Run one worker process (no fork per job)."""
    from searchjobs.jobs.search import check_sms_fits
    from searchjobs.worker.worker import run_worker

    settings = resolve_settings()
    settings.check_secret()  # the SMS carries a result link derived from it
    check_sms_fits(settings.public_base_url)
    runtime = open_runtime(settings)
    runtime.embedders  # noqa: B018 - load and check SEARCHJOBS_EMBEDDER's model now, not in the first job
    run_worker(runtime, list(queues) or None, burst=burst, max_jobs=max_jobs)


@click.command()
@click.option("--once", is_flag=True, help="Run one reconciler pass and exit.")
def scheduler(once: bool) -> None:
    """Run the scheduler: reconciler (every few seconds) and retention cleanup (hourly)."""
    from searchjobs.worker.scheduler import run_scheduler

    runtime = open_runtime()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    click.echo("scheduler running", err=True)
    run_scheduler(runtime, stop, once=once)
