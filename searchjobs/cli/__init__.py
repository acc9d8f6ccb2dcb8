"""The `searchjobs` command.

`searchjobs up` runs everything on the embedded default; the other commands
run one process type each (see the Procfile) against DATABASE_URL/REDIS_URL,
or against the embedded servers of a running `searchjobs up`.

One module per command group; each imports what its commands need inside
them, so that `searchjobs --help` loads no database, Redis or web code.
"""

from __future__ import annotations

import os

import click

from searchjobs import __version__
from searchjobs.cli import catalog, cleanup, db, env, jobs, keys, processes, sms, status, up
from searchjobs.cli.common import fail
from searchjobs.errors import ConfigError, DependencyUnavailable, SearchJobsError


@click.group()
@click.version_option(__version__, prog_name="searchjobs")
@click.option("--log-format", type=click.Choice(["auto", "json", "text"]), default=None,
              help="Log format (default: SEARCHJOBS_LOG_FORMAT, else text on a terminal, JSON otherwise).")
def main(log_format: str | None) -> None:
    """searchjobs: durable visual-search jobs (Postgres is the truth; Redis a queue and a cache)."""
    from searchjobs import logs

    if log_format:  # the processes this command starts (gunicorn, `up`'s children) log the same way
        os.environ["SEARCHJOBS_LOG_FORMAT"] = log_format
    try:
        logs.configure(os.environ.get("SEARCHJOBS_LOG_FORMAT") or "auto")
    except ValueError as exc:
        fail(f"SEARCHJOBS_LOG_FORMAT: {exc}")


for command in (up.up, env.env, processes.web, processes.worker, processes.scheduler, db.db, db.release,
                catalog.catalog, cleanup.cleanup, status.status, keys.keys, jobs.jobs, sms.sms):
    main.add_command(command)


def _unreachable(exc: BaseException) -> str | None:
    """A one-line reason when `exc` says Postgres or Redis cannot be reached, else None."""
    from searchjobs.db.engine import DB_ERRORS, is_outage
    from searchjobs.overview import first_line
    from searchjobs.queue import REDIS_UNAVAILABLE

    if isinstance(exc, DB_ERRORS) and is_outage(exc):
        return f"Postgres is unreachable or failing ({first_line(exc)})"
    if isinstance(exc, REDIS_UNAVAILABLE):
        return f"Redis is unreachable ({first_line(exc)})"
    return None


def run() -> None:
    """The console script: an error the user can act on is one line and an exit code, not a traceback."""
    try:
        main()
    except DependencyUnavailable as exc:
        fail(exc.message, code=1)
    except (ConfigError, SearchJobsError) as exc:
        fail(exc.message, code=getattr(exc, "exit_code", 2))
    except Exception as exc:
        # an outage is an answer (exit 1), not a stack trace
        reason = _unreachable(exc)
        if reason is None:
            raise
        fail(reason, code=1)


if __name__ == "__main__":
    run()
