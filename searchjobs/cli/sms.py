"""`searchjobs sms`: the SMS outbox, and sending again what an operator decides."""

from __future__ import annotations

import click

from searchjobs.cli.common import fail, open_runtime, table, to_json, when


@click.group()
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

    runtime = open_runtime()
    with runtime.engine.connect() as conn:
        rows = [_sms_view(r) for r in outbox.list_rows(conn, status, limit)]
    if as_json:
        click.echo(to_json(rows))
        return
    table(["id", "job id", "status", "to", "attempts", "error", "next attempt", "give up at", "sid"],
          [[r["id"], r["job_id"], r["status"] + (" (parked)" if r["parked"] else ""), r["to"], r["attempts"],
            r["last_error_code"] or "", when(r["next_attempt_at"]), when(r["give_up_at"]),
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
        fail("give one ID, or --all-failed")
    runtime = open_runtime()
    settings = runtime.settings
    with runtime.engine.begin() as conn:
        if notification_id is not None:
            row = outbox.get(conn, notification_id)
            if row is None:
                fail(f"no SMS row {notification_id}", code=1)
            if row["status"] == "unknown" and not outbox.is_parked(row):
                fail(f"SMS {notification_id} is unknown and its provider look-up is still scheduled "
                     f"({when(row['next_attempt_at'])}); it is settled without you", code=1)
            if row["status"] not in ("failed", "unknown"):
                fail(f"SMS {notification_id} is {row['status']}; only failed or parked unknown rows can be "
                     "retried", code=1)
        ids = outbox.requeue(conn, notification_id=notification_id, all_failed=all_failed,
                             give_up_after=settings.sms_give_up_hours * 3600,
                             retention_days=settings.retention_days)
    if notification_id is not None and not ids:
        fail(f"SMS {notification_id} changed meanwhile; look again with `searchjobs sms list`", code=1)
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
