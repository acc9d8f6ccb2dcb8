"""The `searchjobs` command.

`searchjobs up` runs everything on the embedded default; the other commands
run one process type each (see the Procfile) against DATABASE_URL/REDIS_URL,
or against the embedded servers of a running `searchjobs up`.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import click

from searchjobs import __version__, defaults
from searchjobs.config import Settings
from searchjobs.errors import ConfigError, DependencyUnavailable, NotFound, SearchJobsError

log = logging.getLogger("searchjobs.cli")

DEMO_CATALOG_SIZE = 3000  # items `up` loads into an empty catalog
CHILD_STOP_TIMEOUT = 30  # seconds `up` waits for its processes after Ctrl-C before killing them


def _fail(message: str, code: int = 2) -> None:
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)


def resolve_settings() -> Settings:
    """Settings from the environment; without URLs, those of a running `searchjobs up` in the data dir."""
    from searchjobs.embedded import running_stack_urls

    settings = Settings.from_env()
    if settings.database_url and settings.redis_url:
        return settings
    urls = running_stack_urls(settings.data_dir)
    if urls is None:
        _fail("DATABASE_URL and REDIS_URL are not set and no `searchjobs up` is running in "
              f"{settings.data_dir.resolve()} (set SEARCHJOBS_DATA_DIR, or the two URLs)")
    database_url, redis_url = urls
    return settings.with_urls(settings.database_url or database_url, settings.redis_url or redis_url)


def _runtime(settings: Settings | None = None):
    from searchjobs.runtime import Runtime

    return Runtime.from_settings(settings or resolve_settings())


@click.group()
@click.version_option(__version__, prog_name="searchjobs")
@click.option("--log-format", type=click.Choice(["auto", "json", "text"]), default=None,
              help="Log format (default: SEARCHJOBS_LOG_FORMAT, else text on a terminal, JSON otherwise).")
def main(log_format: str | None) -> None:
    """searchjobs: durable visual-search jobs (Postgres is the truth; Redis a queue and a cache)."""
    from searchjobs import logs

    logs.configure(log_format or os.environ.get("SEARCHJOBS_LOG_FORMAT", "auto"))


# -- up -------------------------------------------------------------------

def _secret_key(data_dir: Path) -> str:
    """A random SECRET_KEY kept in the data dir, so result links survive restarts of `up`."""
    path = data_dir / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
    return path.read_text().strip()


@main.command()
@click.option("--port", default=8000, show_default=True, help="Port of the web app (on 127.0.0.1).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address the web app listens on.")
@click.option("--workers", "worker_count", default=2, show_default=True, type=click.IntRange(1, 64),
              help="Worker processes.")
@click.option("--demo-size", default=DEMO_CATALOG_SIZE, show_default=True, type=click.IntRange(0),
              help="Demo catalog items to load when the catalog is empty (0: none).")
def up(port: int, host: str, worker_count: int, demo_size: int) -> None:
    """Run the whole service: embedded PostgreSQL + Valkey, migrations, web, workers, scheduler."""
    from searchjobs.catalog import store as catalog
    from searchjobs.db import engine as db
    from searchjobs.db import schema
    from searchjobs.embedded import EmbeddedStack

    settings = Settings.from_env()
    data_dir = settings.data_dir.resolve()
    stack = None
    env = dict(os.environ)
    if settings.embedded:
        click.echo(f"Starting embedded PostgreSQL and Valkey (data in {data_dir}) ...")
        stack = EmbeddedStack(data_dir).start()
        env.setdefault("DATABASE_URL", stack.postgres.url)
        env.setdefault("REDIS_URL", stack.valkey.url)
    data_dir.mkdir(parents=True, exist_ok=True)
    env.setdefault("SECRET_KEY", _secret_key(data_dir))
    public_url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
    env.setdefault("PUBLIC_BASE_URL", public_url)
    env["SEARCHJOBS_DATA_DIR"] = str(data_dir)
    # one metrics folder for web, workers and scheduler: /metrics then adds up every process's counters
    metrics_dir = Path(env.setdefault("PROMETHEUS_MULTIPROC_DIR", str(data_dir / "metrics")))
    metrics_dir.mkdir(parents=True, exist_ok=True)
    for stale in metrics_dir.glob("*.db"):  # values of an earlier run's processes
        stale.unlink()
    children: list[subprocess.Popen] = []
    try:
        database_url = env["DATABASE_URL"]
        click.echo("Migrating the database ...")
        schema.upgrade(database_url)
        engine = db.make_engine(database_url, pool_size=1)
        with engine.connect() as conn:
            empty = catalog.count(conn) == 0
        if empty and demo_size:
            click.echo(f"Loading the demo catalog ({demo_size} generated items; label: Demo catalog) ...")
            _load_demo_with_progress(engine, demo_size)
        engine.dispose()

        exe = [sys.executable, "-m", "searchjobs"]
        commands = [("web", exe + ["web", "--host", host, "--port", str(port)])]
        commands += [(f"worker-{i + 1}", exe + ["worker"]) for i in range(worker_count)]
        commands += [("scheduler", exe + ["scheduler"])]
        for _name, command in commands:
            children.append(subprocess.Popen(command, env=env))
        click.echo("")
        click.echo(f"searchjobs is running at {env['PUBLIC_BASE_URL']}")
        click.echo(f"  data:      {data_dir}")
        click.echo(f"  processes: web, {worker_count} worker(s), scheduler (pids "
                   f"{', '.join(str(c.pid) for c in children)})")
        click.echo("Press Ctrl-C to stop.")
        _wait_for_children(children)
    finally:
        _stop_children(children)
        if stack is not None:
            click.echo("Stopping embedded servers ...")
            stack.stop()


def _wait_for_children(children: list[subprocess.Popen]) -> None:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(0.5):
        for child in children:
            if child.poll() is not None:
                click.echo(f"A process exited (pid {child.pid}, code {child.returncode}); stopping.", err=True)
                return


def _stop_children(children: list[subprocess.Popen]) -> None:
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + CHILD_STOP_TIMEOUT
    for child in children:
        try:
            child.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def _load_demo_with_progress(engine, size: int) -> int:
    from rich.progress import Progress

    from searchjobs.catalog.load import load_demo

    with Progress(transient=False) as progress:
        task = progress.add_task("Demo catalog", total=size)
        return load_demo(engine, size, on_batch=lambda n: progress.advance(task, n))


# -- process types --------------------------------------------------------

@main.command()
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


@main.command()
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
    runtime = _runtime(settings)
    run_worker(runtime, list(queues) or None, burst=burst, max_jobs=max_jobs)


@main.command()
@click.option("--once", is_flag=True, help="Run one reconciler pass and exit.")
def scheduler(once: bool) -> None:
    """Run the scheduler: reconciler (every few seconds) and retention cleanup (hourly)."""
    from searchjobs.worker.scheduler import run_scheduler

    runtime = _runtime()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    click.echo("scheduler running", err=True)
    run_scheduler(runtime, stop, once=once)


# -- database ------------------------------------------------------------

@main.group()
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


# -- catalog -------------------------------------------------------------

@main.group()
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
    loaded = _load_demo_with_progress(engine, size)
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
        _fail(str(exc))
    for line, reason in report.skipped:
        click.echo(f"line {line}: skipped: {reason}", err=True)
    click.echo(f"{report.loaded} items imported, {len(report.skipped)} rows skipped")
    if report.loaded == 0 and report.skipped:
        sys.exit(1)


# -- operations ------------------------------------------------------------

@main.command()
@click.option("--dry-run", is_flag=True, help="Count what would be deleted; delete nothing.")
@click.option("--days", type=click.IntRange(0), default=None, help="Retention (default SEARCHJOBS_RETENTION_DAYS).")
def cleanup(dry_run: bool, days: int | None) -> None:
    """Delete finished jobs older than the retention period, with their events, images and SMS rows."""
    from searchjobs.worker.scheduler import cleanup as run_cleanup

    runtime = _runtime()
    report = run_cleanup(runtime, retention_days=days, dry_run=dry_run)
    if report.skipped:
        _fail("another cleanup is running (the scheduler's, or a second `searchjobs cleanup`); nothing deleted",
              code=1)
    verb = "would delete" if dry_run else "deleted"
    click.echo(f"{verb}: {report.jobs} jobs, {report.events} events, {report.notifications} notifications, "
               f"{report.images} images")


# -- status ------------------------------------------------------------------

STATUS_STUCK_PENDING = 300  # seconds; a pending job older than this means no worker is taking jobs


def _age(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def collect_status(runtime, failed_limit: int = 10) -> dict:
    """What `searchjobs status` shows, as one dict; a part whose server is unreachable is None."""
    from datetime import UTC, datetime, timedelta

    from searchjobs.db.engine import DB_ERRORS, is_outage
    from searchjobs.jobs import store as job_queries
    from searchjobs.jobs.store import unfinished_summary
    from searchjobs.notifications import outbox
    from searchjobs.queue import REDIS_UNAVAILABLE, queue_overview, worker_overview

    now = datetime.now(UTC)
    report = {"checked_at": now.isoformat(), "redis": {"ok": True, "error": None},
              "postgres": {"ok": True, "error": None}, "queues": None, "workers": None, "jobs": None,
              "failed_jobs": None, "sms_outbox": None, "warnings": []}
    try:
        report["queues"] = queue_overview(runtime.redis)
        report["workers"] = worker_overview(runtime.redis)
    except REDIS_UNAVAILABLE as exc:
        report["redis"] = {"ok": False, "error": _first_line(exc)}
    try:
        with runtime.engine.connect() as conn:
            day_ago = now - timedelta(days=1)
            report["jobs"] = {
                "last_hour": job_queries.counts_by_status(conn, now - timedelta(hours=1)),
                "last_day": job_queries.counts_by_status(conn, day_ago),
                "unfinished": unfinished_summary(conn),
            }
            failed = job_queries.list_jobs(conn, status="failed", limit=failed_limit, before_id=None,
                                           client_id=None, admin=True)
            report["failed_jobs"] = [
                {"job_id": r["job_id"], "error_code": r["error_code"], "error": r["error"],
                 "attempts": r["attempts"], "finished_at": r["finished_at"].isoformat() if r["finished_at"] else None}
                for r in failed if r["finished_at"] is None or r["finished_at"] >= day_ago
            ]
            report["sms_outbox"] = outbox.counts_by_status(conn)
    except DB_ERRORS as exc:
        if not is_outage(exc):
            raise
        report["postgres"] = {"ok": False, "error": _first_line(exc)}

    warnings = report["warnings"]
    if report["workers"] is not None and not report["workers"]:
        warnings.append("no RQ worker is registered: start `searchjobs worker` processes")
    if report["jobs"] is not None:
        pending = report["jobs"]["unfinished"]["pending"]
        if (pending["oldest_age_s"] or 0) > STATUS_STUCK_PENDING:
            warnings.append(f"{pending['count']} pending job(s), the oldest {_age(pending['oldest_age_s'])} old: "
                            "are workers and the scheduler running?")
    if report["sms_outbox"]:
        stuck = {s: n for s, n in report["sms_outbox"].items() if s in ("failed", "unknown", "undelivered")}
        if stuck:
            warnings.append("SMS outbox: " + ", ".join(f"{n} {s}" for s, n in sorted(stuck.items())))
    return report


def _unfinished_cell(summary: dict | None) -> str:
    if summary is None:
        return ""
    if not summary["count"]:
        return "0"
    return f"{summary['count']} (oldest {_age(summary['oldest_age_s'])})"


def _print_status(report: dict) -> None:
    for name, label in (("postgres", "Postgres"), ("redis", "Redis")):
        state = report[name]
        click.echo(f"{label}: {'ok' if state['ok'] else 'UNREACHABLE (' + state['error'] + ')'}")
    if report["queues"] is not None:
        _table(["queue", "waiting", "oldest", "running", "failed (RQ)"],
               [[q["queue"], q["depth"], _age(q["oldest_age_s"]), q["started"], q["failed"]]
                for q in report["queues"]], title="Queues")
    if report["workers"] is not None:
        _table(["worker", "host", "pid", "state", "current job", "heartbeat"],
               [[w["name"], w["host"] or "", w["pid"] or "", w["state"], w["current_job"] or "",
                 _age(w["heartbeat_age_s"]) + " ago" if w["heartbeat_age_s"] is not None else ""]
                for w in report["workers"]], title=f"Workers ({len(report['workers'])})")
    if report["jobs"] is not None:
        jobs = report["jobs"]
        statuses = ("pending", "processing", "completed", "failed", "cancelled")
        _table(["status", "created last hour", "created last day", "now (oldest)"],
               [[s, jobs["last_hour"].get(s, 0), jobs["last_day"].get(s, 0),
                 _unfinished_cell(jobs["unfinished"].get(s))] for s in statuses], title="Jobs")
    if report["failed_jobs"]:
        _table(["job id", "error code", "attempts", "finished", "message"],
               [[f["job_id"], f["error_code"] or "", f["attempts"], (f["finished_at"] or "")[:19].replace("T", " "),
                 (f["error"] or "")[:80]] for f in report["failed_jobs"]], title="Failed in the last day")
    if report["sms_outbox"] is not None:
        _table(["status", "rows"], [[s, n] for s, n in sorted(report["sms_outbox"].items())], title="SMS outbox")
    for warning in report["warnings"]:
        click.echo(f"attention: {warning}")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document (for scripts).")
@click.option("--failed", "failed_limit", default=10, show_default=True, type=click.IntRange(0, 1000),
              help="How many recent failed jobs to list.")
def status(as_json: bool, failed_limit: int) -> None:
    """Queues, workers, jobs by status, failed jobs and the SMS outbox.

    Exit code 0 when Postgres and Redis both answer, 1 when either is
    unreachable (what the other one says is printed all the same).
    """
    runtime = _runtime()
    report = collect_status(runtime, failed_limit)
    if as_json:
        click.echo(_json(report))
    else:
        _print_status(report)
    sys.exit(0 if report["postgres"]["ok"] and report["redis"]["ok"] else 1)


# -- API keys --------------------------------------------------------------

@main.group()
def keys() -> None:
    """API keys (shown once at creation; only a hash is stored)."""


@keys.command("create")
@click.argument("name")
@click.option("--admin", is_flag=True, help="An admin key sees and changes every job.")
def keys_create(name: str, admin: bool) -> None:
    """Create a key for client NAME and print it once."""
    from searchjobs import clients

    runtime = _runtime()
    if not name.strip() or len(name) > 100:
        _fail("NAME must be 1-100 characters")
    with runtime.engine.begin() as conn:
        row, key = clients.create(conn, name.strip(), is_admin=admin)
    click.echo(key)
    click.echo(f"created {'admin ' if admin else ''}key {row['key_prefix']} for {row['name']!r}; "
               "it is shown only now", err=True)


@keys.command("list")
@click.option("--json", "as_json", is_flag=True)
def keys_list(as_json: bool) -> None:
    """List clients and their keys' prefixes."""
    from searchjobs import clients

    runtime = _runtime()
    with runtime.engine.connect() as conn:
        rows = clients.list_all(conn)
    if as_json:
        click.echo(_json([{k: v for k, v in r.items()} for r in rows]))
        return
    _table(["prefix", "name", "admin", "created", "last used", "revoked"],
           [[r["key_prefix"], r["name"], "yes" if r["is_admin"] else "", _when(r["created_at"]),
             _when(r["last_used_at"]), _when(r["revoked_at"])] for r in rows])


@keys.command("revoke")
@click.argument("prefix_or_name")
def keys_revoke(prefix_or_name: str) -> None:
    """Revoke a key by its prefix (sjk_...) or its client's name."""
    from searchjobs import clients

    runtime = _runtime()
    with runtime.engine.begin() as conn:
        row = clients.revoke(conn, prefix_or_name)
    if row is None:
        _fail(f"no active key matches {prefix_or_name!r}", code=1)
    click.echo(f"revoked {row['key_prefix']} ({row['name']})")


# -- jobs -------------------------------------------------------------------

@main.group()
def jobs() -> None:
    """Inspect and act on search jobs."""


@jobs.command("list")
@click.option("--status", type=click.Choice(["pending", "processing", "completed", "failed", "cancelled"]))
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 1000))
@click.option("--json", "as_json", is_flag=True)
def jobs_list(status: str | None, limit: int, as_json: bool) -> None:
    """The newest jobs."""
    from searchjobs.jobs import store as job_queries

    runtime = _runtime()
    with runtime.engine.connect() as conn:
        rows = job_queries.list_jobs(conn, status=status, limit=limit, before_id=None, client_id=None, admin=True)
    if as_json:
        from searchjobs.jobs.cache import job_view

        click.echo(_json([{k: v for k, v in job_view(r).items() if k != "results"} for r in rows]))
        return
    _table(["job id", "status", "progress", "stage", "attempts", "created", "error"],
           [[r["job_id"], r["status"], f"{r['progress']}%", r["stage"] or "", str(r["attempts"]),
             _when(r["created_at"]), r["error_code"] or ""] for r in rows])


@jobs.command("show")
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True)
def jobs_show(job_id: str, as_json: bool) -> None:
    """One job, its events and its SMS (phone numbers masked)."""
    from searchjobs.jobs import store as job_queries
    from searchjobs.jobs.cache import job_view
    from searchjobs.notifications import outbox
    from searchjobs.notifications.phone import mask

    runtime = _runtime()
    with runtime.engine.connect() as conn:
        row = job_queries.get(conn, job_id)
        if row is None:
            _fail(f"no job {job_id}", code=1)
        events = job_queries.events(conn, job_id)
        sms = outbox.for_job(conn, job_id)
    view = job_view(row)
    view["phone"] = mask(row["phone_number"]) if row["phone_number"] else None
    view["worker"] = row["worker_name"]
    view["sms_outbox"] = [{"status": n["status"], "to": mask(n["to_number"]), "attempts": n["attempts"],
                           "provider_sid": n["provider_sid"], "last_error_code": n["last_error_code"]} for n in sms]
    if as_json:
        view["events"] = events
        click.echo(_json(view))
        return
    for key in ("job_id", "status", "progress", "stage", "attempts", "version", "categories", "phone", "worker",
                "error", "created_at", "started_at", "finished_at"):
        click.echo(f"{key:>12}: {view.get(key)}")
    for n in view["sms_outbox"]:
        click.echo(f"{'sms':>12}: {n['status']} to {n['to']} (attempts {n['attempts']}, sid {n['provider_sid']})")
    _table(["event", "kind", "status", "progress", "stage", "attempt", "at"],
           [[str(e["id"]), e["kind"], e["status"], f"{e['progress']}%", e["stage"] or "", str(e["attempt"]),
             _when(e["created_at"])] for e in events])


@jobs.command("retry")
@click.argument("job_id")
def jobs_retry(job_id: str) -> None:
    """Requeue a failed or cancelled job."""
    from searchjobs import service
    from searchjobs.jobs.store import InvalidTransition

    runtime = _runtime()
    try:
        _, enqueued = service.retry(runtime, job_id, by="operator")
    except NotFound:
        _fail(f"no job {job_id}", code=1)
    except InvalidTransition as exc:
        _fail(exc.message, code=1)
    click.echo(f"{job_id}: requeued" if enqueued else
               f"{job_id}: pending; Redis is unavailable, the reconciler will enqueue it")


@jobs.command("cancel")
@click.argument("job_id")
def jobs_cancel(job_id: str) -> None:
    """Cancel a job: a queued one never starts; a running one stops at its next step."""
    from searchjobs import service
    from searchjobs.jobs.store import InvalidTransition

    runtime = _runtime()
    try:
        row = service.cancel(runtime, job_id, by="operator")
    except NotFound:
        _fail(f"no job {job_id}", code=1)
    except InvalidTransition as exc:
        _fail(exc.message, code=1)
    state = "cancelled" if row["status"] == "cancelled" else "cancel requested (stops at its next step)"
    click.echo(f"{job_id}: {state}")


# -- sms ----------------------------------------------------------------------

@main.group()
def sms() -> None:
    """Inspect the SMS outbox and send again what an operator decides (phone numbers masked)."""


def _sms_view(row: dict) -> dict:
    from searchjobs.notifications import outbox
    from searchjobs.notifications.phone import mask

    view = {k: row[k] for k in ("id", "job_id", "status", "attempts", "provider_sid", "provider_status",
                                "last_error_code", "last_error_message", "first_attempt_at", "last_send_at",
                                "next_attempt_at", "give_up_at", "created_at", "sent_at")}
    view["to"] = mask(row["to_number"])
    view["parked"] = outbox.is_parked(row)
    return view


@sms.command("list")
@click.option("--status", type=click.Choice(["pending", "sending", "unknown", "sent", "delivered", "undelivered",
                                             "failed"]))
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10000))
@click.option("--json", "as_json", is_flag=True)
def sms_list(status: str | None, limit: int, as_json: bool) -> None:
    """The newest SMS outbox rows. `unknown (parked)`: an operator must decide (see `sms retry`)."""
    from searchjobs.notifications import outbox

    runtime = _runtime()
    with runtime.engine.connect() as conn:
        rows = [_sms_view(r) for r in outbox.list_rows(conn, status, limit)]
    if as_json:
        click.echo(_json(rows))
        return
    _table(["id", "job id", "status", "to", "attempts", "error", "next attempt", "give up at", "sid"],
           [[r["id"], r["job_id"], r["status"] + (" (parked)" if r["parked"] else ""), r["to"], r["attempts"],
             r["last_error_code"] or "", _when(r["next_attempt_at"]), _when(r["give_up_at"]),
             r["provider_sid"] or ""] for r in rows])


@sms.command("retry")
@click.argument("notification_id", metavar="ID", type=int, required=False)
@click.option("--all-failed", is_flag=True, help="Every failed row the provider never accepted.")
def sms_retry(notification_id: int | None, all_failed: bool) -> None:
    """Send a failed SMS again, or a parked `unknown` one after checking the provider console that it is
    not there (the send that follows does not look it up first)."""
    from searchjobs.notifications import outbox
    from searchjobs.queue import REDIS_UNAVAILABLE, enqueue_notification

    if (notification_id is None) == (not all_failed):
        _fail("give one ID, or --all-failed")
    runtime = _runtime()
    settings = runtime.settings
    with runtime.engine.begin() as conn:
        if notification_id is not None:
            row = outbox.get(conn, notification_id)
            if row is None:
                _fail(f"no SMS row {notification_id}", code=1)
            if row["status"] == "unknown" and not outbox.is_parked(row):
                _fail(f"SMS {notification_id} is unknown and its provider look-up is still scheduled "
                      f"({_when(row['next_attempt_at'])}); it is settled without you", code=1)
            if row["status"] not in ("failed", "unknown"):
                _fail(f"SMS {notification_id} is {row['status']}; only failed or parked unknown rows can be "
                      "retried", code=1)
        ids = outbox.requeue(conn, notification_id=notification_id, all_failed=all_failed,
                             give_up_after=settings.sms_give_up_hours * 3600,
                             retention_days=settings.retention_days)
    if notification_id is not None and not ids:
        _fail(f"SMS {notification_id} changed meanwhile; look again with `searchjobs sms list`", code=1)
    if not ids:
        click.echo("no failed SMS to retry")
        return
    enqueued = True
    try:
        for nid in ids:
            enqueue_notification(runtime.redis, nid)
    except REDIS_UNAVAILABLE:
        enqueued = False
    for nid in ids:
        click.echo(f"SMS {nid}: pending, " + ("enqueued" if enqueued else
                                             "Redis is unavailable, the scheduler will enqueue it"))


# -- output helpers -----------------------------------------------------------

def _when(value) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else ""


def _json(value) -> str:
    import json

    return json.dumps(value, default=str, indent=2)


def _table(headers: list[str], rows: list[list[str]], title: str | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(*headers, title=title)
    for row in rows:
        table.add_row(*[str(c) for c in row])
    Console().print(table)


def _unreachable(exc: BaseException) -> str | None:
    """A one-line reason when `exc` says Postgres or Redis cannot be reached, else None."""

    from searchjobs.db.engine import DB_ERRORS, is_outage
    from searchjobs.queue import REDIS_UNAVAILABLE

    if isinstance(exc, DB_ERRORS) and is_outage(exc):
        return f"Postgres is unreachable or failing ({_first_line(exc)})"
    if isinstance(exc, REDIS_UNAVAILABLE):
        return f"Redis is unreachable ({_first_line(exc)})"
    return None


def run() -> None:
    try:
        main()
    except DependencyUnavailable as exc:
        _fail(exc.message, code=1)
    except (ConfigError, SearchJobsError) as exc:
        _fail(exc.message)
    except Exception as exc:
        # an outage is an answer (exit 1), not a stack trace
        reason = _unreachable(exc)
        if reason is None:
            raise
        _fail(reason, code=1)


if __name__ == "__main__":
    run()
