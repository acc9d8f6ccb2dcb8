"""`searchjobs status`: prints the report that searchjobs.overview gathers."""

from __future__ import annotations

import sys

import click

from searchjobs.cli.common import open_runtime, table, to_json


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document (for scripts).")
@click.option("--failed", "failed_limit", default=10, show_default=True, type=click.IntRange(0, 1000),
              help="How many recent failed jobs to list.")
def status(as_json: bool, failed_limit: int) -> None:
    """Queues, workers, jobs by status, failed jobs and the SMS outbox.

    Exit code 0 when Postgres and Redis both answer, 1 when either is
    unreachable (what the other one says is printed all the same).
    """
    from searchjobs.overview import status_report

    runtime = open_runtime()
    report = status_report(runtime, failed_limit)
    if as_json:
        click.echo(to_json(report))
    else:
        _print_status(report)
    sys.exit(0 if report["postgres"]["ok"] and report["redis"]["ok"] else 1)


def _unfinished_cell(summary: dict | None) -> str:
    from searchjobs.overview import human_age

    if summary is None:
        return ""
    if not summary["count"]:
        return "0"
    return f"{summary['count']} (oldest {human_age(summary['oldest_age_s'])})"


def _print_status(report: dict) -> None:
    from searchjobs.overview import human_age as age

    for name, label in (("postgres", "Postgres"), ("redis", "Redis")):
        state = report[name]
        click.echo(f"{label}: {'ok' if state['ok'] else 'UNREACHABLE (' + state['error'] + ')'}")
    if report["queues"] is not None:
        table(["queue", "waiting", "oldest", "running", "failed (RQ)"],
              [[q["queue"], q["depth"], age(q["oldest_age_s"]), q["started"], q["failed"]]
               for q in report["queues"]], title="Queues")
    if report["workers"] is not None:
        table(["worker", "host", "pid", "state", "current job", "heartbeat"],
              [[w["name"], w["host"] or "", w["pid"] or "", w["state"], w["current_job"] or "",
                age(w["heartbeat_age_s"]) + " ago" if w["heartbeat_age_s"] is not None else ""]
               for w in report["workers"]], title=f"Workers ({len(report['workers'])})")
    if report["jobs"] is not None:
        jobs = report["jobs"]
        statuses = ("pending", "processing", "completed", "failed", "cancelled")
        table(["status", "created last hour", "created last day", "now (oldest)"],
              [[s, jobs["last_hour"].get(s, 0), jobs["last_day"].get(s, 0),
                _unfinished_cell(jobs["unfinished"].get(s))] for s in statuses], title="Jobs")
    if report["failed_jobs"]:
        table(["job id", "error code", "attempts", "finished", "message"],
              [[f["job_id"], f["error_code"] or "", f["attempts"], (f["finished_at"] or "")[:19].replace("T", " "),
                (f["error"] or "")[:80]] for f in report["failed_jobs"]], title="Failed in the last day")
    if report["sms_outbox"] is not None:
        table(["status", "rows"], [[s, n] for s, n in sorted(report["sms_outbox"].items())], title="SMS outbox")
    for warning in report["warnings"]:
        click.echo(f"attention: {warning}")
