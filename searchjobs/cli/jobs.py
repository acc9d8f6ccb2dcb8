"""`searchjobs jobs`: inspect and act on search jobs."""

from __future__ import annotations

import click

from searchjobs.cli.common import fail, open_runtime, table, to_json, when
from searchjobs.errors import NotFound


@click.group()
def jobs() -> None:
    """Inspect and act on search jobs."""


@jobs.command("list")
@click.option("--status", type=click.Choice(["pending", "processing", "completed", "failed", "cancelled"]))
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 1000))
@click.option("--json", "as_json", is_flag=True)
def jobs_list(status: str | None, limit: int, as_json: bool) -> None:
    """The newest jobs."""
    from searchjobs.jobs import store as job_queries

    runtime = open_runtime()
    with runtime.engine.connect() as conn:
        rows = job_queries.list_jobs(conn, status=status, limit=limit, before_id=None, client_id=None, admin=True)
    if as_json:
        from searchjobs.jobs.cache import job_view

        click.echo(to_json([{k: v for k, v in job_view(r).items() if k != "results"} for r in rows]))
        return
    table(["job id", "status", "progress", "stage", "attempts", "created", "error"],
          [[r["job_id"], r["status"], f"{r['progress']}%", r["stage"] or "", str(r["attempts"]),
            when(r["created_at"]), r["error_code"] or ""] for r in rows])


@jobs.command("show")
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True)
def jobs_show(job_id: str, as_json: bool) -> None:
    """One job, its events and its SMS (phone numbers masked)."""
    from searchjobs.jobs import store as job_queries
    from searchjobs.jobs.cache import job_view
    from searchjobs.notifications import outbox
    from searchjobs.notifications.phone import mask

    runtime = open_runtime()
    with runtime.engine.connect() as conn:
        row = job_queries.get(conn, job_id)
        if row is None:
            fail(f"no job {job_id}", code=1)
        events = job_queries.events(conn, job_id)
        sms = outbox.for_job(conn, job_id)
    view = job_view(row)
    view["phone"] = mask(row["phone_number"]) if row["phone_number"] else None
    view["worker"] = row["worker_name"]
    view["sms_outbox"] = [{"status": n["status"], "to": mask(n["to_number"]), "attempts": n["attempts"],
                           "provider_sid": n["provider_sid"], "last_error_code": n["last_error_code"]} for n in sms]
    if as_json:
        view["events"] = events
        click.echo(to_json(view))
        return
    for key in ("job_id", "status", "progress", "stage", "attempts", "version", "categories", "phone", "worker",
                "error", "created_at", "started_at", "finished_at"):
        click.echo(f"{key:>12}: {view.get(key)}")
    for n in view["sms_outbox"]:
        click.echo(f"{'sms':>12}: {n['status']} to {n['to']} (attempts {n['attempts']}, sid {n['provider_sid']})")
    table(["event", "kind", "status", "progress", "stage", "attempt", "at"],
          [[str(e["id"]), e["kind"], e["status"], f"{e['progress']}%", e["stage"] or "", str(e["attempt"]),
            when(e["created_at"])] for e in events])


@jobs.command("retry")
@click.argument("job_id")
def jobs_retry(job_id: str) -> None:
    """Requeue a failed or cancelled job."""
    from searchjobs import service
    from searchjobs.jobs.store import InvalidTransition

    runtime = open_runtime()
    try:
        _, enqueued = service.retry(runtime, job_id, by="operator")
    except NotFound:
        fail(f"no job {job_id}", code=1)
    except InvalidTransition as exc:
        fail(exc.message, code=1)
    click.echo(f"{job_id}: requeued" if enqueued else
               f"{job_id}: pending; Redis is unavailable, the reconciler will enqueue it")


@jobs.command("cancel")
@click.argument("job_id")
def jobs_cancel(job_id: str) -> None:
    """Cancel a job: a queued one never starts; a running one stops at its next step."""
    from searchjobs import service
    from searchjobs.jobs.store import InvalidTransition

    runtime = open_runtime()
    try:
        row = service.cancel(runtime, job_id, by="operator")
    except NotFound:
        fail(f"no job {job_id}", code=1)
    except InvalidTransition as exc:
        fail(exc.message, code=1)
    state = "cancelled" if row["status"] == "cancelled" else "cancel requested (stops at its next step)"
    click.echo(f"{job_id}: {state}")
