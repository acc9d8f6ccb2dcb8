"""SMS result links: exactly one message per completed job, through provider faults and crashes.

Real Postgres and Valkey (the session's servers); the provider is tests.fake_twilio.FakeTwilio, a
Twilio Messages API on loopback, driven by the real twilio client through TwilioSender. This module
overrides `settings` so the shared `runtime`, `app`, `client` and `run_jobs` fixtures all send
through the fake.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from twilio.request_validator import RequestValidator

from searchjobs import links
from searchjobs.logs import JsonFormatter, TextFormatter
from searchjobs.notifications import outbox
from searchjobs.notifications import send as notify
from searchjobs.notifications.messages import body_sha256
from searchjobs.queue import enqueue_notification, notification_queue
from searchjobs.runtime import Runtime, install
from searchjobs.worker.reconciler import reconcile
from tests.conftest import TEST_SECRET, wait_for
from tests.fake_twilio import FakeTwilio
from tests.integration.test_core_loop import row_of, submit_upload

PHONE, COUNTRY = "06 12 34 56 78", "33"
E164 = "+33612345678"
NATIONAL_DIGITS = "612345678"  # what any unmasked form of the number contains (URL-encoded ones too)
FROM_NUMBER = "+15005550006"
PUBLIC = "http://testserver"  # PUBLIC_BASE_URL of the shared settings fixture
CALLBACK_URL = f"{PUBLIC}/webhooks/twilio/status"
CALLBACK_PATH = "/webhooks/twilio/status"
WAIT_SECONDS = 20.0  # upper bound when awaiting another process or thread; conditions are polled


# -- fixtures -----------------------------------------------------------------


@pytest.fixture
def settings(settings, fake_twilio):
    """The shared test settings, sending through the fake with a short request timeout."""
    return dataclasses.replace(
        settings,
        twilio_account_sid=fake_twilio.account_sid,
        twilio_auth_token=fake_twilio.auth_token,
        twilio_from_number=FROM_NUMBER,
        twilio_api_base_url=fake_twilio.base_url,
        twilio_timeout=0.5,
    )


@pytest.fixture
def sms_runtime(runtime):
    assert runtime.sender.name == "twilio"
    return runtime


# -- helpers -------------------------------------------------------------------


def completed_job(client, runtime, run_jobs, *, phone=True) -> tuple[str, str]:
    """Submit a job (with the test phone number unless phone=False) and run the search only.

    Returns (job_id, token); the SMS send, if any, is left waiting on the notifications queue.
    """
    fields = {"phone_number": PHONE, "country_code": COUNTRY} if phone else {}
    response = submit_upload(client, **fields)
    assert response.status_code == 202, response.get_json()
    body = response.get_json()
    run_jobs(["searches"])
    assert row_of(runtime, body["job_id"])["status"] == "completed"
    return body["job_id"], body["result_url"].rsplit("/r/", 1)[1]


def outbox_rows(runtime, job_id) -> list[dict]:
    with runtime.engine.connect() as conn:
        return outbox.for_job(conn, job_id)


def the_row(runtime, job_id) -> dict:
    rows = outbox_rows(runtime, job_id)
    assert len(rows) == 1
    return rows[0]


ROW_TIMES = ("created_at", "updated_at", "first_attempt_at", "next_attempt_at", "claimed_at", "last_send_at",
             "give_up_at", "sent_at", "may_land_until")


def time_passes(runtime, notification_id, seconds: float) -> None:
    """What `seconds` passing would do to an outbox row, without the wait: every time on it moves back."""
    moved = ", ".join(f"{c} = {c} - make_interval(secs => :s)" for c in ROW_TIMES)
    with runtime.engine.begin() as conn:
        conn.execute(sa.text(f"UPDATE notifications SET {moved} WHERE id = :id"),
                     {"id": notification_id, "s": float(seconds)})


def make_due(runtime, notification_id) -> None:
    """What waiting until the row is due would do (its backoff, and for an unknown outcome the look-up's
    wait for the last request to be unable to land), without the wait."""
    with runtime.engine.connect() as conn:
        left = conn.execute(sa.text("SELECT greatest(extract(epoch FROM next_attempt_at - now()), 0) "
                                    "FROM notifications WHERE id = :id"), {"id": notification_id}).scalar()
    time_passes(runtime, notification_id, float(left or 0) + 0.01)


def age_claim(runtime, notification_id) -> None:
    """What STALE_SENDING_SECONDS passing would do to a claim, without the wait."""
    time_passes(runtime, notification_id, notify.STALE_SENDING_SECONDS + 1)


def posts(fake) -> list[str]:
    return [path for method, path in fake.requests if method == "POST"]


def methods(fake) -> list[str]:
    return [method for method, _ in fake.requests]


def unless_exited(proc: subprocess.Popen, condition):
    """`condition` for wait_for, failing at once if `proc` exits instead of waiting out the timeout."""
    def check():
        value = condition()
        if not value and proc.poll() is not None:
            pytest.fail(f"process exited ({proc.returncode}) while waited on")
        return value
    return check


def expected_body(token: str) -> str:
    return f"Your search results are ready: {PUBLIC}/r/{token}"


def callback_params(sid: str, status: str, error_code: str | None = None) -> dict:
    """The form Twilio posts to a StatusCallback."""
    params = {
        "AccountSid": FakeTwilio.account_sid,
        "ApiVersion": "2010-04-01",
        "From": FROM_NUMBER,
        "To": E164,
        "MessageSid": sid,
        "SmsSid": sid,
        "MessageStatus": status,
        "SmsStatus": status,
    }
    if error_code is not None:
        params["ErrorCode"] = error_code
    return params


def post_callback(client, params, *, sign_url=CALLBACK_URL, path=CALLBACK_PATH, token=FakeTwilio.auth_token,
                  signature=None, **kwargs):
    if signature is None:
        signature = RequestValidator(token).compute_signature(sign_url, params)
    headers = {"X-Twilio-Signature": signature} if signature else {}
    return client.post(path, data=params, headers=headers, **kwargs)


# -- one SMS per completed job ----------------------------------------------------


def test_completed_job_gets_exactly_one_sms_whose_link_opens_the_results(app, client, sms_runtime, run_jobs,
                                                                          fake_twilio):
    response = submit_upload(client, phone_number=PHONE, country_code=COUNTRY)
    job_id = response.get_json()["job_id"]
    token = response.get_json()["result_url"].rsplit("/r/", 1)[1]
    run_jobs()  # the search, then the send it enqueued on the notifications queue

    [message] = fake_twilio.messages
    assert message["to"] == E164 and message["from"] == FROM_NUMBER
    assert message["body"] == expected_body(token)
    assert message["body"].isascii() and len(message["body"]) <= 160
    assert message["status_callback"] == CALLBACK_URL
    assert posts(fake_twilio) == [f"/2010-04-01/Accounts/{fake_twilio.account_sid}/Messages.json"]

    row = the_row(sms_runtime, job_id)
    assert row["status"] == "sent" and row["provider"] == "twilio" and row["provider_sid"] == message["sid"]
    assert row["attempts"] == 1 and row["sent_at"] is not None and row["last_error_code"] is None
    assert row["to_number"] == E164 and row["kind"] == "results_ready" and row["channel"] == "sms"
    assert token not in row["body"] and links.LINK_PLACEHOLDER in row["body"]  # the token is never stored
    assert row_of(sms_runtime, job_id)["status"] == "completed"

    # the link in the SMS opens the results
    link = message["body"].rsplit(" ", 1)[1]
    assert link == links.result_url(PUBLIC, token) and link.startswith(f"{PUBLIC}/r/")
    results = client.get(f"/api/results/{link.rsplit('/r/', 1)[1]}")
    assert results.status_code == 200
    assert results.get_json()["status"] == "completed" and results.get_json()["results"]["categories"]["dress"]
    assert NATIONAL_DIGITS not in results.get_data(as_text=True)
    if any(rule.rule.startswith("/r/") for rule in app.url_map.iter_rules()):  # once the HTML pages exist
        page = client.get(link.removeprefix(PUBLIC))
        assert page.status_code == 200 and NATIONAL_DIGITS not in page.get_data(as_text=True)

    # a duplicate enqueue (and a direct second run) sends nothing more
    enqueue_notification(sms_runtime.redis, row["id"])
    run_jobs(["notifications"])
    assert notify.send(row["id"]) == "skipped"
    assert len(fake_twilio.messages) == 1 and len(posts(fake_twilio)) == 1
    assert the_row(sms_runtime, job_id)["attempts"] == 1


def test_job_without_phone_has_no_outbox_row_and_sends_nothing(client, sms_runtime, run_jobs, fake_twilio):
    job_id, _ = completed_job(client, sms_runtime, run_jobs, phone=False)
    run_jobs()
    assert outbox_rows(sms_runtime, job_id) == []
    assert fake_twilio.requests == []


def test_concurrent_runs_of_one_send_make_one_sms(client, sms_runtime, run_jobs, fake_twilio):
    job_id, _ = completed_job(client, sms_runtime, run_jobs)
    notification_id = the_row(sms_runtime, job_id)["id"]
    sms_runtime.sender  # built once, before the threads share it  # noqa: B018
    fake_twilio.script(("slow", 0.3))  # the first send is held at the provider while the second one runs
    outcome = {}
    first = threading.Thread(target=lambda: outcome.setdefault("first", notify.send(notification_id)))
    first.start()
    wait_for(lambda: posts(fake_twilio), WAIT_SECONDS, "the first send to reach the fake", interval=0.01)
    assert notify.send(notification_id) == "skipped"  # the row is claimed: `sending`, not stale
    first.join(WAIT_SECONDS)
    assert outcome["first"] == "sent"
    assert len(fake_twilio.messages) == 1 and len(posts(fake_twilio)) == 1


def test_cancelled_job_sends_no_sms(client, sms_runtime, run_jobs, fake_twilio):
    job_id = submit_upload(client, phone_number=PHONE, country_code=COUNTRY).get_json()["job_id"]
    response = client.post(f"/api/search-jobs/{job_id}/cancel")
    assert response.status_code == 200 and response.get_json()["status"] == "cancelled"
    run_jobs()
    assert row_of(sms_runtime, job_id)["status"] == "cancelled"
    assert outbox_rows(sms_runtime, job_id) == []
    assert fake_twilio.requests == []


# -- provider faults ----------------------------------------------------------------


@pytest.mark.parametrize("code", [21610, 21211])
def test_permanent_error_is_recorded_and_never_retried(client, sms_runtime, run_jobs, fake_twilio, code):
    job_id, _ = completed_job(client, sms_runtime, run_jobs)
    fake_twilio.script(("error", 400, code))
    run_jobs(["notifications"])

    row = the_row(sms_runtime, job_id)
    assert row["status"] == "failed" and row["last_error_code"] == str(code)
    assert row["attempts"] == 1 and row["next_attempt_at"] is None and row["provider_sid"] is None
    assert E164 not in row["last_error_message"]  # our own text, not Twilio's (which may quote the number)
    assert row_of(sms_runtime, job_id)["status"] == "completed"  # the job stays completed

    assert reconcile(sms_runtime).notifications == 0  # the scheduler never picks it up again
    enqueue_notification(sms_runtime.redis, row["id"])  # nor does a stray duplicate send it
    run_jobs(["notifications"])
    assert notify.send(row["id"]) == "skipped"
    assert fake_twilio.messages == [] and len(posts(fake_twilio)) == 1
    assert the_row(sms_runtime, job_id)["attempts"] == 1


def test_rate_limit_goes_back_to_pending_then_sends_exactly_one(client, sms_runtime, run_jobs, fake_twilio):
    job_id, _ = completed_job(client, sms_runtime, run_jobs)
    fake_twilio.script(("error", 429, 20429))
    run_jobs(["notifications"])

    row = the_row(sms_runtime, job_id)
    assert row["status"] == "pending" and row["last_error_code"] == "20429" and row["attempts"] == 1
    with sms_runtime.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT next_attempt_at > now() FROM notifications WHERE id = :id"),
                            {"id": row["id"]}).scalar()
    assert fake_twilio.messages == []
    assert reconcile(sms_runtime).notifications == 0  # not due yet
    assert notify.send(row["id"]) == "skipped"

    make_due(sms_runtime, row["id"])
    assert reconcile(sms_runtime).notifications == 1
    run_jobs(["notifications"])
    row = the_row(sms_runtime, job_id)
    [message] = fake_twilio.messages
    assert row["status"] == "sent" and row["provider_sid"] == message["sid"] and row["attempts"] == 2
    assert methods(fake_twilio) == ["POST", "POST"]  # "not sent" is certain after a 429: no look-up needed


def test_connection_refused_goes_back_to_pending(client, sms_runtime, run_jobs, fake_twilio):
    from searchjobs.notifications.twilio import TwilioSender

    job_id, _ = completed_job(client, sms_runtime, run_jobs)
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    settings = sms_runtime.settings
    sms_runtime.sender = TwilioSender(settings.twilio_account_sid, settings.twilio_auth_token,
                                      from_number=FROM_NUMBER, api_base_url=f"http://127.0.0.1:{closed_port}",
                                      timeout=0.5)
    notification_id = the_row(sms_runtime, job_id)["id"]
    assert notify.send(notification_id) == "retry"
    row = the_row(sms_runtime, job_id)
    assert row["status"] == "pending" and row["last_error_code"] == "sms_send_retryable"

    del sms_runtime.sender  # back to the sender built from settings (the fake)
    make_due(sms_runtime, notification_id)
    assert notify.send(notification_id) == "sent"
    assert len(fake_twilio.messages) == 1 and methods(fake_twilio) == ["POST"]


@pytest.mark.parametrize(
    ("behaviour", "created"),
    [
        ("timeout_after_create", True),
        ("drop_after_create", True),
        (("error", 500, 20500), False),
        (("error", 500, 20500), True),  # Twilio failed after storing the message: planted below
        ("drop_before_create", False),
    ],
    ids=["timeout-after-create", "drop-after-create", "500", "500-but-created", "drop-before-create"],
)
def test_unknown_outcome_is_looked_up_before_any_resend(client, sms_runtime, run_jobs, fake_twilio, behaviour,
                                                        created):
    job_id, token = completed_job(client, sms_runtime, run_jobs)
    fake_twilio.script(behaviour)
    run_jobs(["notifications"])

    row = the_row(sms_runtime, job_id)
    assert row["status"] == "unknown" and row["attempts"] == 1 and row["provider_sid"] is None
    if created and isinstance(behaviour, tuple):
        fake_twilio._create({"To": E164, "From": FROM_NUMBER, "Body": expected_body(token)})
    assert len(fake_twilio.messages) == (1 if created else 0)
    assert reconcile(sms_runtime).notifications == 0  # backoff not over yet

    make_due(sms_runtime, row["id"])
    assert reconcile(sms_runtime).notifications == 1
    run_jobs(["notifications"])

    [message] = fake_twilio.messages  # still exactly one SMS
    assert message["body"] == expected_body(token)
    row = the_row(sms_runtime, job_id)
    assert row["status"] == "sent" and row["provider_sid"] == message["sid"] and row["attempts"] == 2
    second = methods(fake_twilio)[1:]
    assert second[0] == "GET"  # looked up before anything else
    assert second.count("POST") == (0 if created else 1)


def test_a_conclusive_lookup_settles_the_past_so_a_rate_limited_resend_goes_back_to_pending(
        client, sms_runtime, run_jobs, fake_twilio):
    """unknown -> (look-up, once the request cannot land, finds nothing; resend hits 429) -> `pending`:
    the 500'd request is settled and the 429 created nothing, so the next try sends without looking."""
    job_id, _ = completed_job(client, sms_runtime, run_jobs)
    fake_twilio.script(("error", 500, 20500), ("error", 429, 20429))
    run_jobs(["notifications"])
    notification_id = the_row(sms_runtime, job_id)["id"]
    make_due(sms_runtime, notification_id)
    assert notify.send(notification_id) == "retry"
    row = the_row(sms_runtime, job_id)
    assert row["status"] == "pending" and row["last_error_code"] == "20429"
    make_due(sms_runtime, notification_id)
    assert notify.send(notification_id) == "sent"
    assert len(fake_twilio.messages) == 1
    # POST(500) | GET.. POST(429) | POST(ok)
    calls = methods(fake_twilio)
    assert calls[0] == "POST" and calls[1] == "GET" and calls[-2:] == ["POST", "POST"] and calls.count("POST") == 3


def test_a_sender_killed_before_its_request_sends_again_without_waiting(client, sms_runtime, run_jobs,
                                                                       fake_twilio):
    job_id, token = completed_job(client, sms_runtime, run_jobs)
    notification_id = the_row(sms_runtime, job_id)["id"]
    notification_queue(sms_runtime.redis).empty()
    with sms_runtime.db.connect() as conn:  # claimed, then killed before recording a send start: nothing went out
        outbox.claim(conn, notification_id, notify.STALE_SENDING_SECONDS)
    age_claim(sms_runtime, notification_id)
    assert notify.send(notification_id) == "sent"
    [message] = fake_twilio.messages
    assert message["body"] == expected_body(token) and methods(fake_twilio) == ["POST"]


@pytest.mark.parametrize("earlier", ["none", "unknown"])
def test_a_database_error_before_the_request_hands_the_row_back_at_once(client, sms_runtime, run_jobs, fake_twilio,
                                                                         monkeypatch, earlier):
    """Postgres drops the sender's connection between its claim and its request (a backend terminated,
    as in a failover): no request is made, and the row is due again now, not after STALE_SENDING_SECONDS."""
    job_id, token = completed_job(client, sms_runtime, run_jobs)
    notification_id = the_row(sms_runtime, job_id)["id"]
    notification_queue(sms_runtime.redis).empty()
    if earlier == "unknown":  # an earlier request that may have landed: the row must stay to be looked up
        fake_twilio.script(("error", 500, 20500))
        assert notify.send(notification_id) == "unknown"
        make_due(sms_runtime, notification_id)

    def terminated(conn, *args, **kwargs):
        conn.execute(sa.text("SELECT pg_terminate_backend(pg_backend_pid())"))

    monkeypatch.setattr(outbox, "mark_sending", terminated)
    requests_before = len(fake_twilio.requests)
    assert notify.send(notification_id) == "retry"
    row = the_row(sms_runtime, job_id)
    assert row["status"] == ("pending" if earlier == "none" else "unknown")
    assert row["last_error_code"] == notify.DATABASE_FAILED
    with sms_runtime.db.connect() as conn:
        assert row["next_attempt_at"] <= conn.execute(sa.text("SELECT now()")).scalar()
    calls = methods(fake_twilio)[requests_before:]
    assert "POST" not in calls and bool(calls) == (earlier == "unknown")  # only the earlier request's look-up
    assert fake_twilio.messages == []

    monkeypatch.undo()
    assert notify.send(notification_id) == "sent"
    [message] = fake_twilio.messages
    assert message["body"] == expected_body(token)

def test_a_database_error_after_the_claim_was_taken_over_leaves_the_newer_claim_alone(client, sms_runtime,
                                                                                      run_jobs, fake_twilio,
                                                                                      monkeypatch):
    job_id, _ = completed_job(client, sms_runtime, run_jobs)
    notification_id = the_row(sms_runtime, job_id)["id"]
    notification_queue(sms_runtime.redis).empty()

    def taken_over_then_terminated(conn, *args, **kwargs):  # this sender stalled; a newer try claimed the row
        age_claim(sms_runtime, notification_id)
        with sms_runtime.engine.begin() as other:
            assert outbox.claim(other, notification_id, notify.STALE_SENDING_SECONDS) is not None
        conn.execute(sa.text("SELECT pg_terminate_backend(pg_backend_pid())"))

    monkeypatch.setattr(outbox, "mark_sending", taken_over_then_terminated)
    assert notify.send(notification_id) == "skipped"
    row = the_row(sms_runtime, job_id)
    assert row["status"] == "sending" and row["attempts"] == 2  # the newer claim's, untouched
    assert fake_twilio.requests == []


def test_stale_attempt_cannot_overwrite_a_newer_claim(client, sms_runtime, run_jobs, fake_twilio):
    job_id, _ = completed_job(client, sms_runtime, run_jobs)
    notification_id = the_row(sms_runtime, job_id)["id"]
    with sms_runtime.db.connect() as conn:
        first = outbox.claim(conn, notification_id, notify.STALE_SENDING_SECONDS)
    age_claim(sms_runtime, notification_id)
    with sms_runtime.db.connect() as conn:
        second = outbox.claim(conn, notification_id, notify.STALE_SENDING_SECONDS)
        assert second["previous_status"] == "sending" and second["attempts"] == first["attempts"] + 1
        # the presumed-dead first sender wakes up with a 429: it must not put the row back to `pending`
        outbox.mark_retry(conn, notification_id, first["attempts"], status="pending", delay=0, error_code="20429",
                          error_message="late")
        outbox.mark_failed(conn, notification_id, first["attempts"], "21610", "late")
    row = the_row(sms_runtime, job_id)
    assert row["status"] == "sending" and row["attempts"] == second["attempts"]


# -- killed senders -----------------------------------------------------------------


def test_killed_sender_is_reconciled_by_the_scheduler_without_a_second_sms(client, sms_runtime, run_jobs,
                                                                           fake_twilio):
    job_id, token = completed_job(client, sms_runtime, run_jobs)
    notification_id = the_row(sms_runtime, job_id)["id"]
    # the sender that dies: it took the RQ job, claimed the row, and the provider created the message ...
    notification_queue(sms_runtime.redis).empty()
    with sms_runtime.db.connect() as conn:
        claimed = outbox.claim(conn, notification_id, notify.STALE_SENDING_SECONDS)
        body = links.render_sms(claimed["body"], TEST_SECRET, PUBLIC, job_id)
        assert outbox.mark_sending(conn, notification_id, claimed["attempts"], body_sha256(body),
                                   may_land_for=notify.settle_seconds(sms_runtime.sender, sms_runtime.settings))
    sms_runtime.sender.send(E164, body, status_callback=CALLBACK_URL)
    # ... and it was killed before recording it: the row stays `sending`
    assert the_row(sms_runtime, job_id)["status"] == "sending"
    assert reconcile(sms_runtime).notifications == 0  # a fresh claim may still be working
    assert notify.send(notification_id) == "skipped"

    age_claim(sms_runtime, notification_id)
    assert reconcile(sms_runtime).notifications == 1
    run_jobs(["notifications"])

    [message] = fake_twilio.messages
    assert message["body"] == expected_body(token)
    row = the_row(sms_runtime, job_id)
    assert row["status"] == "sent" and row["provider_sid"] == message["sid"] and row["attempts"] == 2
    assert len(posts(fake_twilio)) == 1


def test_worker_process_killed_while_the_provider_holds_the_send(client, sms_runtime, run_jobs, fake_twilio,
                                                                 settings, tmp_path):
    job_id, token = completed_job(client, sms_runtime, run_jobs)  # the send waits on the notifications queue
    notification_id = the_row(sms_runtime, job_id)["id"]
    fake_twilio.script(("slow", 1.0))  # the message is created 1 s after the request, answer or not

    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "SECRET_KEY": TEST_SECRET,
        "PUBLIC_BASE_URL": PUBLIC,
        "TWILIO_ACCOUNT_SID": fake_twilio.account_sid,
        "TWILIO_AUTH_TOKEN": fake_twilio.auth_token,
        "TWILIO_FROM_NUMBER": FROM_NUMBER,
        "TWILIO_API_BASE_URL": fake_twilio.base_url,
        "TWILIO_TIMEOUT": "30",  # the worker must still be waiting when it is killed
        "SEARCHJOBS_LOG_FORMAT": "json",
    }
    log_path = tmp_path / "worker.log"
    with open(log_path, "wb") as log_file:
        worker = subprocess.Popen(
            [sys.executable, "-m", "searchjobs", "worker", "--queues", "notifications"],
            env=env, cwd=Path(__file__).resolve().parents[2], stdout=log_file, stderr=subprocess.STDOUT,
        )
        try:
            wait_for(unless_exited(worker, lambda: posts(fake_twilio)), WAIT_SECONDS,
                     "the worker's send to reach the fake", interval=0.01)
            assert the_row(sms_runtime, job_id)["status"] == "sending"
            worker.send_signal(signal.SIGKILL)
        finally:
            if worker.poll() is None:
                worker.kill()
            worker.wait(WAIT_SECONDS)
    assert worker.returncode == -signal.SIGKILL, log_path.read_text()

    wait_for(lambda: fake_twilio.messages, WAIT_SECONDS, "the provider to create the held message")
    row = the_row(sms_runtime, job_id)
    assert row["status"] == "sending" and row["provider_sid"] is None  # exactly what the dead worker left
    # its TWILIO_TIMEOUT of 30 s is on the row: its request may land for longer than the claim's stale time
    landing = (row["may_land_until"] - row["last_send_at"]).total_seconds()
    assert landing >= notify.SEND_START_GRACE + 2 * 30 + sms_runtime.settings.sms_lookup_margin
    assert landing > notify.STALE_SENDING_SECONDS
    time_passes(sms_runtime, notification_id, landing + 0.01)
    assert reconcile(sms_runtime).notifications == 1
    run_jobs(["notifications"])

    [message] = fake_twilio.messages
    assert message["body"] == expected_body(token)
    row = the_row(sms_runtime, job_id)
    assert row["status"] == "sent" and row["provider_sid"] == message["sid"]
    assert len(posts(fake_twilio)) == 1
    assert NATIONAL_DIGITS not in log_path.read_text() and token not in log_path.read_text()


# -- status callbacks ----------------------------------------------------------------


def sent_row(client, sms_runtime, run_jobs) -> dict:
    job_id, _ = completed_job(client, sms_runtime, run_jobs)
    run_jobs(["notifications"])
    row = the_row(sms_runtime, job_id)
    assert row["status"] == "sent" and row["provider_status"] == "queued"
    return row


def current(sms_runtime, row) -> dict:
    return the_row(sms_runtime, row["job_id"])


def test_signed_status_callbacks_move_the_row_forward_only(client, sms_runtime, run_jobs, fake_twilio):
    row = sent_row(client, sms_runtime, run_jobs)
    sid = row["provider_sid"]

    response = post_callback(client, callback_params(sid, "sent"))
    assert response.status_code == 200 and response.get_json() == {"recorded": True}
    assert current(sms_runtime, row)["provider_status"] == "sent"

    assert post_callback(client, callback_params(sid, "delivered")).status_code == 200
    delivered = current(sms_runtime, row)
    assert delivered["status"] == "delivered" and delivered["delivered_at"] is not None

    # late and repeated reports change nothing: "sent" after "delivered", "delivered" twice
    for status in ("sent", "queued", "delivered"):
        response = post_callback(client, callback_params(sid, status))
        assert response.status_code == 200 and response.get_json() == {"recorded": False}
    assert current(sms_runtime, row) == delivered


def test_callback_url_is_the_public_one_whatever_the_host_header(client, sms_runtime, run_jobs, fake_twilio):
    row = sent_row(client, sms_runtime, run_jobs)
    params = callback_params(row["provider_sid"], "delivered")
    # behind a proxy the request arrives for another host; Twilio signed PUBLIC_BASE_URL
    response = post_callback(client, params, base_url="http://10.0.0.7:8080")
    assert response.status_code == 200
    assert current(sms_runtime, row)["status"] == "delivered"


def test_callback_signature_covers_the_query_string(client, sms_runtime, run_jobs, fake_twilio):
    row = sent_row(client, sms_runtime, run_jobs)
    params = callback_params(row["provider_sid"], "sent")
    signed_for = f"{CALLBACK_URL}?attempt=1"
    assert post_callback(client, params, sign_url=signed_for, path=CALLBACK_PATH).status_code == 403
    assert post_callback(client, params, sign_url=signed_for, path=f"{CALLBACK_PATH}?attempt=2").status_code == 403
    assert current(sms_runtime, row)["provider_status"] == "queued"
    assert post_callback(client, params, sign_url=signed_for, path=f"{CALLBACK_PATH}?attempt=1").status_code == 200
    assert current(sms_runtime, row)["provider_status"] == "sent"


def test_undelivered_callback_records_the_error_code(client, sms_runtime, run_jobs, fake_twilio):
    row = sent_row(client, sms_runtime, run_jobs)
    response = post_callback(client, callback_params(row["provider_sid"], "undelivered", "30003"))
    assert response.status_code == 200
    after = current(sms_runtime, row)
    assert after["status"] == "undelivered" and after["last_error_code"] == "30003"
    assert after["delivered_at"] is None


def test_forged_callbacks_get_403_and_change_nothing(client, sms_runtime, run_jobs, fake_twilio):
    row = sent_row(client, sms_runtime, run_jobs)
    before = current(sms_runtime, row)
    params = callback_params(row["provider_sid"], "delivered")
    signature = RequestValidator(FakeTwilio.auth_token).compute_signature(CALLBACK_URL, params)

    forged = [
        post_callback(client, {**params, "MessageStatus": "failed", "SmsStatus": "failed"}, signature=signature),
        post_callback(client, {**params, "ErrorCode": "30007"}, signature=signature),  # an added param
        post_callback(client, params, sign_url="http://localhost/webhooks/twilio/status"),  # the Host header's URL
        post_callback(client, params, sign_url="https://testserver/webhooks/twilio/status"),
        post_callback(client, params, token="not-the-auth-token"),
        post_callback(client, params, signature=""),  # no header at all
        post_callback(client, params, signature="bm90IGEgc2lnbmF0dXJl"),
    ]
    for response in forged:
        assert response.status_code == 403
        assert response.get_json()["error"]["code"] == "invalid_signature"
    assert current(sms_runtime, row) == before


def test_callbacks_are_refused_without_an_auth_token(sms_runtime, run_jobs, client, fake_twilio):
    from searchjobs.web import create_app

    row = sent_row(client, sms_runtime, run_jobs)
    before = current(sms_runtime, row)
    unconfigured = Runtime(settings=dataclasses.replace(sms_runtime.settings, twilio_account_sid=None,
                                                        twilio_auth_token=None),
                           engine=sms_runtime.engine, redis=sms_runtime.redis)
    try:
        other = create_app(runtime=unconfigured).test_client()
        for token in (FakeTwilio.auth_token, ""):
            params = callback_params(row["provider_sid"], "delivered")
            signature = RequestValidator(token).compute_signature(CALLBACK_URL, params)
            response = other.post(CALLBACK_PATH, data=params, headers={"X-Twilio-Signature": signature})
            assert response.status_code == 403 and response.get_json()["error"]["code"] == "invalid_signature"
    finally:
        install(sms_runtime)
    assert current(sms_runtime, row) == before


def test_callback_for_an_unknown_sid_is_acknowledged_and_logged(client, sms_runtime, fake_twilio, caplog):
    caplog.set_level(logging.INFO, logger="searchjobs")
    response = post_callback(client, callback_params("SM" + "0" * 32, "delivered"))
    assert response.status_code == 200 and response.get_json() == {"recorded": False}
    [record] = [r for r in caplog.records if r.name == "searchjobs.web.webhooks"]
    assert record.levelno == logging.WARNING and "unknown message sid" in record.getMessage()
    with sms_runtime.engine.connect() as conn:
        assert outbox.counts_by_status(conn) == {}


# -- logs -----------------------------------------------------------------------------


def test_logs_never_show_the_phone_number_or_the_token(client, sms_runtime, run_jobs, fake_twilio, caplog):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.INFO, logger="urllib3")  # as logs.configure() does in every process
    fake_twilio.script("timeout_after_create")  # a send, an unknown outcome, a look-up, an adoption
    response = submit_upload(client, phone_number=PHONE, country_code=COUNTRY)
    job_id = response.get_json()["job_id"]
    token = response.get_json()["result_url"].rsplit("/r/", 1)[1]
    run_jobs()
    notification_id = the_row(sms_runtime, job_id)["id"]
    make_due(sms_runtime, notification_id)
    assert notify.send(notification_id) == "adopted"
    sid = the_row(sms_runtime, job_id)["provider_sid"]
    assert post_callback(client, callback_params(sid, "delivered")).status_code == 200
    assert client.get(f"/api/results/{token}").status_code == 200
    assert len(fake_twilio.messages) == 1

    records = caplog.records
    assert any(getattr(r, "to", None) == "+33 6•• •• •• 78" for r in records)  # the masked form is logged
    for formatter in (JsonFormatter(), TextFormatter()):  # message and every extra field, as shipped
        text = "\n".join(formatter.format(r) for r in records)
        assert NATIONAL_DIGITS not in text, [line for line in text.splitlines() if NATIONAL_DIGITS in line]
        assert token[:12] not in text, [line for line in text.splitlines() if token[:12] in line]


# -- a look-up is conclusive only once the last request can no longer land ------------------------------


def with_settings(runtime, **changes) -> None:
    """Run this test's sends as a process with these settings would (a fresh sender is built from them)."""
    runtime.settings = dataclasses.replace(runtime.settings, **changes)
    runtime.__dict__.pop("sender", None)


def test_body_hash_and_send_start_are_stored_before_the_first_send(client, sms_runtime, run_jobs, fake_twilio):
    job_id, token = completed_job(client, sms_runtime, run_jobs)
    notification_id = the_row(sms_runtime, job_id)["id"]
    seen = {}
    send = sms_runtime.sender.send

    def spy(to, body, **kwargs):  # what the row says while the request is in flight
        seen.update(the_row(sms_runtime, job_id))
        return send(to, body, **kwargs)

    sms_runtime.sender.send = spy
    assert notify.send(notification_id) == "sent"
    assert seen["status"] == "sending" and seen["body_sha256"] == body_sha256(expected_body(token))
    assert seen["last_send_at"] is not None and seen["last_send_at"] >= seen["claimed_at"]
    row = the_row(sms_runtime, job_id)
    assert row["give_up_at"] is not None and row["body_sha256"] == seen["body_sha256"]
    assert abs((row["give_up_at"] - row["created_at"]).total_seconds() - 24 * 3600) < 1


def test_late_landing_create_is_adopted_not_sent_twice(client, sms_runtime, run_jobs, fake_twilio):
    """The outside tester's case: the provider holds the create past our timeout, then creates it."""
    margin = 1.0
    with_settings(sms_runtime, sms_lookup_margin=margin)
    wait = 2 * sms_runtime.settings.twilio_timeout + margin  # connect + read timeouts, then the margin
    settle = notify.SEND_START_GRACE + wait  # from the recorded send start: the request may start that late
    job_id, token = completed_job(client, sms_runtime, run_jobs)
    notification_id = the_row(sms_runtime, job_id)["id"]
    notification_queue(sms_runtime.redis).empty()  # this test makes each try itself, then leaves it to the scheduler
    fake_twilio.script(("land_late", sms_runtime.settings.twilio_timeout + 0.6))
    assert notify.send(notification_id) == "unknown"
    row = the_row(sms_runtime, job_id)
    assert row["status"] == "unknown" and fake_twilio.messages == []
    assert (row["next_attempt_at"] - row["last_send_at"]).total_seconds() >= settle
    assert row["next_attempt_at"] >= row["may_land_until"]

    # a try that comes too early (a stray enqueue, a forced due time) neither looks up nor sends
    with sms_runtime.engine.begin() as conn:
        conn.execute(sa.text("UPDATE notifications SET next_attempt_at = now() WHERE id = :id"),
                     {"id": notification_id})
    assert notify.send(notification_id) == "waiting"
    assert methods(fake_twilio) == ["POST"]
    row = the_row(sms_runtime, job_id)
    assert row["status"] == "unknown"
    assert (row["next_attempt_at"] - row["may_land_until"]).total_seconds() == pytest.approx(0, abs=0.05)
    assert (row["may_land_until"] - row["last_send_at"]).total_seconds() >= settle

    wait_for(lambda: fake_twilio.messages, WAIT_SECONDS, "the held request to land", interval=0.01)
    wait_for(lambda: reconcile(sms_runtime).notifications, settle + 5, "the look-up to be due", interval=0.01)
    run_jobs(["notifications"])
    [message] = fake_twilio.messages
    row = the_row(sms_runtime, job_id)
    assert row["status"] == "sent" and row["provider_sid"] == message["sid"]
    assert message["body"] == expected_body(token)
    post_at, _, _ = fake_twilio.timed_requests[0]
    lookup_at = next(t for t, method, _ in fake_twilio.timed_requests if method == "GET")
    assert lookup_at - post_at >= wait
    assert methods(fake_twilio).count("POST") == 1


def due_then_send(runtime, run_jobs, notification_id, timeout: float) -> None:
    """Wait (really) until the row is due, then run its send as the scheduler and a worker would."""
    wait_for(lambda: reconcile(runtime).notifications, timeout, "the look-up to be due", interval=0.01)
    run_jobs(["notifications"])


def test_a_sender_frozen_after_recording_its_send_does_not_send_once_re_claimed(client, sms_runtime, run_jobs,
                                                                                fake_twilio, monkeypatch):
    """Sender A records its send, then freezes past its start grace (SIGSTOP, a GC pause); meanwhile its
    claim goes stale and sender B re-claims, looks up (nothing yet) and sends. A wakes: it must not send."""
    monkeypatch.setattr(notify, "SEND_START_GRACE", 0.3)
    job_id, _ = completed_job(client, sms_runtime, run_jobs)
    notification_id = the_row(sms_runtime, job_id)["id"]
    notification_queue(sms_runtime.redis).empty()
    send = sms_runtime.sender.send
    outcomes = []

    def frozen_once(to, body, **kwargs):
        if not outcomes:
            outcomes.append("A frozen")
            time.sleep(0.4)  # A, frozen after mark_sending committed: longer than its start grace
            age_claim(sms_runtime, notification_id)  # ... and longer than STALE_SENDING_SECONDS
            outcomes.append(notify.send(notification_id))  # B
        return send(to, body, **kwargs)  # A wakes up and goes on to make its request

    sms_runtime.sender.send = frozen_once
    outcomes.append(notify.send(notification_id))  # A
    assert outcomes == ["A frozen", "sent", "unknown"]
    [message] = fake_twilio.messages
    assert len(posts(fake_twilio)) == 1  # A made no request
    row = the_row(sms_runtime, job_id)
    assert row["status"] == "sent" and row["provider_sid"] == message["sid"]  # A's late write changed nothing


def test_a_frozen_sender_alone_puts_its_row_back_to_be_looked_up(client, sms_runtime, run_jobs, fake_twilio,
                                                                 monkeypatch):
    monkeypatch.setattr(notify, "SEND_START_GRACE", 0.3)
    job_id, _ = completed_job(client, sms_runtime, run_jobs)
    notification_id = the_row(sms_runtime, job_id)["id"]
    send = sms_runtime.sender.send

    def frozen(to, body, **kwargs):
        time.sleep(0.4)
        return send(to, body, **kwargs)

    sms_runtime.sender.send = frozen
    assert notify.send(notification_id) == "unknown"
    row = the_row(sms_runtime, job_id)
    assert row["status"] == "unknown" and row["last_error_code"] == "sms_send_not_started"
    assert row["next_attempt_at"] >= row["may_land_until"] and fake_twilio.requests == []
    sms_runtime.sender.send = send
    make_due(sms_runtime, notification_id)
    assert notify.send(notification_id) == "sent"
    assert methods(fake_twilio) == ["GET", "GET", "POST"] and len(fake_twilio.messages) == 1


def test_a_request_that_starts_late_within_the_grace_is_still_waited_for(client, sms_runtime, run_jobs,
                                                                         fake_twilio, monkeypatch):
    """The outside tester's case: 2 s pass between recording the send and the request (DNS, a starved CPU),
    and the provider creates the message just inside timeouts + margin after receiving it."""
    margin = 1.0
    with_settings(sms_runtime, sms_lookup_margin=margin)
    monkeypatch.setattr(notify, "SMS_BACKOFF_BASE", 0.2)  # the backoff shorter than the wait, as in production
    t = sms_runtime.settings.twilio_timeout
    job_id, _ = completed_job(client, sms_runtime, run_jobs)
    notification_id = the_row(sms_runtime, job_id)["id"]
    notification_queue(sms_runtime.redis).empty()
    send = sms_runtime.sender.send
    stalled = []

    def stall_once(to, body, **kwargs):
        if not stalled:
            stalled.append(time.sleep(2.0))  # within SEND_START_GRACE: the request is still made
        return send(to, body, **kwargs)

    sms_runtime.sender.send = stall_once
    fake_twilio.script(("land_late", 2 * t + margin - 0.1))
    assert notify.send(notification_id) == "unknown"
    due_then_send(sms_runtime, run_jobs, notification_id, timeout=notify.SEND_START_GRACE + 2 * t + margin + 5)
    [message] = fake_twilio.messages
    assert the_row(sms_runtime, job_id)["provider_sid"] == message["sid"] and len(posts(fake_twilio)) == 1


def test_the_look_up_waits_from_when_the_request_was_given_up(client, sms_runtime, run_jobs, fake_twilio,
                                                              monkeypatch):
    """A stall after the start check (slow DNS, a connect to each of several addresses) makes the request
    start later than the grace allows for: the wait counted from the failure still covers it."""
    from twilio.http.http_client import TwilioHttpClient

    margin = 1.0
    with_settings(sms_runtime, sms_lookup_margin=margin)
    monkeypatch.setattr(notify, "SEND_START_GRACE", 0.5)
    monkeypatch.setattr(notify, "SMS_BACKOFF_BASE", 0.2)
    t = sms_runtime.settings.twilio_timeout
    job_id, _ = completed_job(client, sms_runtime, run_jobs)
    notification_id = the_row(sms_runtime, job_id)["id"]
    notification_queue(sms_runtime.redis).empty()
    request = TwilioHttpClient.request
    stalled = []

    def slow_start(self, method, url, *args, **kwargs):
        if method == "POST" and not stalled:
            stalled.append(time.sleep(1.5))  # after the start check, before a byte is written
        return request(self, method, url, *args, **kwargs)

    monkeypatch.setattr(TwilioHttpClient, "request", slow_start)
    fake_twilio.script(("land_late", 2 * t + margin - 0.1))  # lands after last_send_at + grace + wait
    assert notify.send(notification_id) == "unknown"
    row = the_row(sms_runtime, job_id)
    assert (row["may_land_until"] - row["last_send_at"]).total_seconds() >= 1.5 + t + 2 * t + margin
    due_then_send(sms_runtime, run_jobs, notification_id, timeout=1.5 + 4 * t + margin + 5)
    [message] = fake_twilio.messages
    assert the_row(sms_runtime, job_id)["provider_sid"] == message["sid"] and len(posts(fake_twilio)) == 1


def test_a_worker_with_a_shorter_timeout_cannot_shorten_the_wait(client, sms_runtime, run_jobs, fake_twilio):
    from searchjobs.notifications.twilio import TwilioSender

    with_settings(sms_runtime, sms_lookup_margin=1.0)
    settings = sms_runtime.settings
    job_id, _ = completed_job(client, sms_runtime, run_jobs)
    notification_id = the_row(sms_runtime, job_id)["id"]
    notification_queue(sms_runtime.redis).empty()
    slow = TwilioSender(settings.twilio_account_sid, settings.twilio_auth_token, from_number=FROM_NUMBER,
                        api_base_url=fake_twilio.base_url, timeout=5.0)  # the worker that sent, then died
    with sms_runtime.db.connect() as conn:
        claimed = outbox.claim(conn, notification_id, notify.STALE_SENDING_SECONDS)
        assert outbox.mark_sending(conn, notification_id, claimed["attempts"], "x",
                                   may_land_for=notify.settle_seconds(slow, settings))
    mine = notify.settle_seconds(sms_runtime.sender, settings)  # this worker's own bound: 0.5 s timeouts
    time_passes(sms_runtime, notification_id, mine + 1)
    with sms_runtime.engine.begin() as conn:  # the claim stale, the dead worker's request still able to land
        conn.execute(sa.text("UPDATE notifications SET claimed_at = now() - make_interval(secs => :s) "
                             "WHERE id = :id"), {"id": notification_id, "s": notify.STALE_SENDING_SECONDS + 1})
    assert notify.send(notification_id) == "waiting"
    row = the_row(sms_runtime, job_id)
    assert (row["next_attempt_at"] - row["may_land_until"]).total_seconds() == pytest.approx(0, abs=0.05)
    assert fake_twilio.requests == []


def test_killed_senders_row_reclaimed_early_waits_for_its_request(client, sms_runtime, run_jobs, fake_twilio):
    """A row re-claimed as stale soon after its last request started (a slow try, then death) waits."""
    job_id, _ = completed_job(client, sms_runtime, run_jobs)
    notification_id = the_row(sms_runtime, job_id)["id"]
    notification_queue(sms_runtime.redis).empty()
    with sms_runtime.db.connect() as conn:
        claimed = outbox.claim(conn, notification_id, notify.STALE_SENDING_SECONDS)
    with sms_runtime.engine.begin() as conn:  # its claim is old, but its send started a moment ago
        conn.execute(sa.text("UPDATE notifications SET claimed_at = now() - make_interval(secs => :s), "
                             "last_send_at = now() WHERE id = :id"),
                     {"id": notification_id, "s": notify.STALE_SENDING_SECONDS + 1})
    assert notify.send(notification_id) == "waiting"
    assert fake_twilio.requests == []
    row = the_row(sms_runtime, job_id)
    assert row["status"] == "unknown" and row["attempts"] == claimed["attempts"] + 1
    assert row["last_error_code"] == "sms_sender_lost"
    make_due(sms_runtime, notification_id)
    assert notify.send(notification_id) == "sent"  # looked up (nothing), then sent: one SMS
    assert methods(fake_twilio)[-1] == "POST" and "GET" in methods(fake_twilio) and len(fake_twilio.messages) == 1


def test_a_sender_whose_claim_was_taken_over_does_not_send(client, sms_runtime, run_jobs, fake_twilio):
    job_id, _ = completed_job(client, sms_runtime, run_jobs)
    notification_id = the_row(sms_runtime, job_id)["id"]
    with sms_runtime.db.connect() as conn:
        first = outbox.claim(conn, notification_id, notify.STALE_SENDING_SECONDS)
    age_claim(sms_runtime, notification_id)
    with sms_runtime.db.connect() as conn:
        assert outbox.claim(conn, notification_id, notify.STALE_SENDING_SECONDS) is not None
        # the first sender, slow but alive, gets to its send: its claim is no longer current
        assert not outbox.mark_sending(conn, notification_id, first["attempts"], "x", may_land_for=1)
    assert the_row(sms_runtime, job_id)["last_send_at"] is None


# -- a failed look-up never sends; at the deadline the row is parked for an operator --------------------


def closed_port_sender(runtime):
    from searchjobs.notifications.twilio import TwilioSender

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = runtime.settings
    return TwilioSender(settings.twilio_account_sid, settings.twilio_auth_token, from_number=FROM_NUMBER,
                        api_base_url=f"http://127.0.0.1:{port}", timeout=0.5)


def test_failed_lookups_never_send_and_park_the_row_at_the_deadline(client, sms_runtime, run_jobs, fake_twilio,
                                                                     caplog):
    job_id, _ = completed_job(client, sms_runtime, run_jobs)
    notification_id = the_row(sms_runtime, job_id)["id"]
    fake_twilio.script("drop_before_create")  # nothing created; we cannot tell
    assert notify.send(notification_id) == "unknown"

    good = sms_runtime.sender
    sms_runtime.sender = closed_port_sender(sms_runtime)  # the provider unreachable: every look-up fails
    for _ in range(3):
        make_due(sms_runtime, notification_id)
        assert notify.send(notification_id) == "unknown"
        row = the_row(sms_runtime, job_id)
        assert row["status"] == "unknown" and row["next_attempt_at"] is not None
    assert len(posts(fake_twilio)) == 1  # never a second create

    # the deadline passes while the provider still cannot be asked: parked, no next attempt
    caplog.set_level(logging.WARNING, logger="searchjobs.notifications.send")
    time_passes(sms_runtime, notification_id, 25 * 3600)
    assert notify.send(notification_id) == "parked"
    row = the_row(sms_runtime, job_id)
    assert row["status"] == "unknown" and row["next_attempt_at"] is None and outbox.is_parked(row)
    assert row["last_error_message"].startswith("parked")
    assert any("parked for an operator" in r.getMessage() for r in caplog.records)
    assert reconcile(sms_runtime).notifications == 0
    assert notify.send(notification_id) == "skipped"
    with sms_runtime.engine.connect() as conn:
        assert notification_id not in outbox.due(conn, notify.STALE_SENDING_SECONDS)

    # the operator checked the provider console (nothing there) and retries: one SMS
    sms_runtime.sender = good
    result = sms_cli("retry", str(notification_id), runtime=sms_runtime)
    assert result.exit_code == 0, result.output
    assert f"SMS {notification_id}: pending, enqueued" in result.output
    run_jobs(["notifications"])
    row = the_row(sms_runtime, job_id)
    assert row["status"] == "sent" and len(fake_twilio.messages) == 1


def test_an_unknown_outcome_is_looked_up_even_past_the_deadline(client, sms_runtime, run_jobs, fake_twilio):
    job_id, _ = completed_job(client, sms_runtime, run_jobs)
    notification_id = the_row(sms_runtime, job_id)["id"]
    fake_twilio.script("timeout_after_create")
    assert notify.send(notification_id) == "unknown"
    time_passes(sms_runtime, notification_id, 25 * 3600)
    assert notify.send(notification_id) == "adopted"
    assert len(fake_twilio.messages) == 1


@pytest.mark.parametrize("provider_status", ["delivered", "undelivered", "failed"])
def test_an_adopted_message_keeps_the_providers_final_status(client, sms_runtime, run_jobs, fake_twilio,
                                                              provider_status):
    """Its delivery report came while we did not know the sid (dropped as an unknown sid): the look-up
    that adopts it must not record a delivered or failed message as merely `sent`."""
    job_id, _ = completed_job(client, sms_runtime, run_jobs)
    notification_id = the_row(sms_runtime, job_id)["id"]
    fake_twilio.script("timeout_after_create")
    assert notify.send(notification_id) == "unknown"
    with fake_twilio._lock:
        fake_twilio._messages[0]["status"] = provider_status
    make_due(sms_runtime, notification_id)
    assert notify.send(notification_id) == "adopted"
    row = the_row(sms_runtime, job_id)
    assert row["status"] == provider_status and row["provider_status"] == provider_status
    assert (row["delivered_at"] is not None) == (provider_status == "delivered")
    assert row["provider_sid"] == fake_twilio.messages[0]["sid"] and len(posts(fake_twilio)) == 1
    # a late report of an earlier stage changes nothing
    assert post_callback(client, callback_params(row["provider_sid"], "sent")).get_json() == {"recorded": False}
    assert the_row(sms_runtime, job_id)["status"] == provider_status


# -- the look-up matches the exact body sent, whatever the settings now -----------------------------------


@pytest.mark.parametrize("change", [{"public_base_url": "http://new.example"}, {"secret_key": "rotated-key"}],
                         ids=["PUBLIC_BASE_URL", "SECRET_KEY"])
def test_changed_settings_cannot_make_a_resend_look_new(client, sms_runtime, run_jobs, fake_twilio, change):
    job_id, token = completed_job(client, sms_runtime, run_jobs)
    notification_id = the_row(sms_runtime, job_id)["id"]
    fake_twilio.script("timeout_after_create")
    assert notify.send(notification_id) == "unknown"
    with_settings(sms_runtime, **change)
    make_due(sms_runtime, notification_id)
    assert notify.send(notification_id) == "adopted"
    [message] = fake_twilio.messages
    assert message["body"] == expected_body(token)
    assert the_row(sms_runtime, job_id)["provider_sid"] == message["sid"]


@pytest.mark.parametrize(
    "rewrite",
    [lambda body: body + " ", lambda body: body.replace(":", "\uff1a", 1)],
    ids=["trailing-space", "unicode"],
)
def test_a_message_the_provider_stored_differently_is_found_by_its_link_token(client, sms_runtime, run_jobs,
                                                                              fake_twilio, rewrite):
    """The provider's copy of the body is not byte for byte what we sent: its result token still is ours."""
    job_id, _ = completed_job(client, sms_runtime, run_jobs)
    notification_id = the_row(sms_runtime, job_id)["id"]
    fake_twilio.script("timeout_after_create")
    assert notify.send(notification_id) == "unknown"
    with fake_twilio._lock:
        fake_twilio._messages[0]["body"] = rewrite(fake_twilio._messages[0]["body"])
    make_due(sms_runtime, notification_id)
    assert notify.send(notification_id) == "adopted"
    assert the_row(sms_runtime, job_id)["provider_sid"] == fake_twilio.messages[0]["sid"]
    assert len(posts(fake_twilio)) == 1


def test_a_row_without_a_body_hash_is_found_after_a_base_url_change(client, sms_runtime, run_jobs, fake_twilio):
    """Rows written before body_sha256 existed: the body as built now differs, the token does not."""
    job_id, _ = completed_job(client, sms_runtime, run_jobs)
    notification_id = the_row(sms_runtime, job_id)["id"]
    fake_twilio.script("timeout_after_create")
    assert notify.send(notification_id) == "unknown"
    with sms_runtime.engine.begin() as conn:
        conn.execute(sa.text("UPDATE notifications SET body_sha256 = NULL WHERE id = :id"), {"id": notification_id})
    with_settings(sms_runtime, public_base_url="http://new.example")
    make_due(sms_runtime, notification_id)
    assert notify.send(notification_id) == "adopted"
    assert len(posts(fake_twilio)) == 1


def test_a_shortened_link_at_the_provider_is_never_sent_again(client, sms_runtime, run_jobs, fake_twilio):
    """Link shortening (a Messaging Service setting) hides the token: the look-up cannot tell, so it is
    inconclusive, never "not found"; at the deadline the row is parked for an operator."""
    job_id, _ = completed_job(client, sms_runtime, run_jobs)
    notification_id = the_row(sms_runtime, job_id)["id"]
    fake_twilio.script("timeout_after_create")
    assert notify.send(notification_id) == "unknown"
    with fake_twilio._lock:
        fake_twilio._messages[0]["body"] = "Your search results are ready: https://sj.lnk/4bXz9"
    for _ in range(2):
        make_due(sms_runtime, notification_id)
        assert notify.send(notification_id) == "unknown"
        row = the_row(sms_runtime, job_id)
        assert row["status"] == "unknown" and row["last_error_code"] == "sms_link_unreadable"
    time_passes(sms_runtime, notification_id, 25 * 3600)
    assert notify.send(notification_id) == "parked"
    assert outbox.is_parked(the_row(sms_runtime, job_id))
    assert len(posts(fake_twilio)) == 1 and len(fake_twilio.messages) == 1


def test_a_legit_resend_after_a_base_url_change_sends_the_current_link(client, sms_runtime, run_jobs,
                                                                       fake_twilio):
    job_id, token = completed_job(client, sms_runtime, run_jobs)
    notification_id = the_row(sms_runtime, job_id)["id"]
    fake_twilio.script("drop_before_create")
    assert notify.send(notification_id) == "unknown"
    with_settings(sms_runtime, public_base_url="http://new.example")
    make_due(sms_runtime, notification_id)
    assert notify.send(notification_id) == "sent"
    [message] = fake_twilio.messages
    new_body = f"Your search results are ready: http://new.example/r/{token}"
    assert message["body"] == new_body
    assert the_row(sms_runtime, job_id)["body_sha256"] == body_sha256(new_body)  # what a later look-up matches


def test_a_link_this_secret_key_did_not_sign_is_never_sent(client, sms_runtime, run_jobs, fake_twilio, caplog):
    job_id, token = completed_job(client, sms_runtime, run_jobs)
    notification_id = the_row(sms_runtime, job_id)["id"]
    caplog.set_level(logging.ERROR, logger="searchjobs.notifications.send")
    with_settings(sms_runtime, secret_key="not-the-key-that-signed-it")
    assert notify.send(notification_id) == "paused"
    row = the_row(sms_runtime, job_id)
    assert row["status"] == "pending" and row["last_error_code"] == notify.LINK_MISMATCH
    assert fake_twilio.requests == []
    assert any("SECRET_KEY" in r.getMessage() for r in caplog.records)
    with_settings(sms_runtime, secret_key=TEST_SECRET)
    make_due(sms_runtime, notification_id)
    assert notify.send(notification_id) == "sent"
    assert fake_twilio.messages[0]["body"] == expected_body(token)


# -- give up on a deadline, not a number of tries -----------------------------------------------------------


def test_rate_limits_are_retried_until_the_deadline_however_many_tries(client, sms_runtime, run_jobs,
                                                                       fake_twilio):
    job_id, _ = completed_job(client, sms_runtime, run_jobs)
    notification_id = the_row(sms_runtime, job_id)["id"]
    fake_twilio.script(*[("error", 429, 20429)] * 12)
    for _ in range(10):  # more than the 8 tries that used to be the limit
        assert notify.send(notification_id) == "retry"
        make_due(sms_runtime, notification_id)
    row = the_row(sms_runtime, job_id)
    assert row["status"] == "pending" and row["attempts"] == 10
    time_passes(sms_runtime, notification_id, 24 * 3600)
    assert notify.send(notification_id) == "failed"
    row = the_row(sms_runtime, job_id)
    assert row["status"] == "failed" and row["last_error_code"] == "20429"
    assert "deadline" in row["last_error_message"] and fake_twilio.messages == []


def test_a_row_first_tried_after_its_deadline_is_still_tried(client, sms_runtime, run_jobs, fake_twilio):
    job_id, _ = completed_job(client, sms_runtime, run_jobs)
    notification_id = the_row(sms_runtime, job_id)["id"]
    time_passes(sms_runtime, notification_id, 30 * 3600)  # every worker was down for a day
    assert notify.send(notification_id) == "sent"


def test_the_deadline_never_passes_the_retention_period(client, sms_runtime, run_jobs, fake_twilio):
    job_id, _ = completed_job(client, sms_runtime, run_jobs)
    notification_id = the_row(sms_runtime, job_id)["id"]
    with sms_runtime.db.connect() as conn:
        row = outbox.claim(conn, notification_id, notify.STALE_SENDING_SECONDS, give_up_after=30 * 86400,
                           retention_days=2)
    assert row["give_up_at"] == row["retention_ends_at"]
    assert (row["retention_ends_at"] - row_of(sms_runtime, job_id)["created_at"]).total_seconds() == 2 * 86400


# -- refused credentials pause sending; nothing is lost -------------------------------------------------------


def test_refused_credentials_pause_sending_until_a_worker_has_good_ones(client, sms_runtime, run_jobs,
                                                                        fake_twilio, caplog):
    caplog.set_level(logging.INFO, logger="searchjobs")
    with_settings(sms_runtime, twilio_auth_token="rotated-away")
    first, _ = completed_job(client, sms_runtime, run_jobs)
    second, _ = completed_job(client, sms_runtime, run_jobs)
    run_jobs(["notifications"])

    for job_id in (first, second):
        row = the_row(sms_runtime, job_id)
        assert row["status"] == "pending" and row["last_error_code"] == "20003"
        assert "Twilio refused our credentials" in row["last_error_message"]
    assert len(posts(fake_twilio)) == 1  # this process asked once, then paused (no request per row)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "Twilio refused our credentials" in errors[0].getMessage()
    assert "TWILIO_AUTH_TOKEN" in errors[0].getMessage() and errors[0].job_id == first
    with sms_runtime.engine.connect() as conn:
        left = conn.execute(sa.text("SELECT extract(epoch FROM next_attempt_at - now()) FROM notifications "
                                    "ORDER BY id")).scalars().all()
    assert all(0 < s <= sms_runtime.settings.sms_auth_retry_seconds for s in left)

    # a long outage: past the original deadline, the rows still wait (and their deadline moves on)
    for job_id in (first, second):
        row = the_row(sms_runtime, job_id)
        time_passes(sms_runtime, row["id"], 30 * 3600)
        assert notify.send(row["id"]) == "paused"
        after = the_row(sms_runtime, job_id)
        assert after["status"] == "pending" and after["give_up_at"] > datetime_now(sms_runtime)

    # the worker restarts with the fixed token: every SMS goes out, once
    with_settings(sms_runtime, twilio_auth_token=fake_twilio.auth_token)
    for job_id in (first, second):
        make_due(sms_runtime, the_row(sms_runtime, job_id)["id"])
    assert reconcile(sms_runtime).notifications == 2
    run_jobs(["notifications"])
    assert [the_row(sms_runtime, j)["status"] for j in (first, second)] == ["sent", "sent"]
    assert len(fake_twilio.messages) == 2


def test_credentials_revoked_at_the_provider_then_restored(client, sms_runtime, run_jobs, fake_twilio):
    """No restart: the same process probes again once its pause is over."""
    with_settings(sms_runtime, sms_auth_retry_seconds=0.3)
    job_id, _ = completed_job(client, sms_runtime, run_jobs)
    fake_twilio.refuse_credentials()
    run_jobs(["notifications"])
    row = the_row(sms_runtime, job_id)
    assert row["status"] == "pending" and row["last_error_code"] == "20003"
    fake_twilio.accept_credentials()
    wait_for(lambda: reconcile(sms_runtime).notifications, WAIT_SECONDS, "the paused row to be due",
             interval=0.01)
    time.sleep(0.3)  # this process's own pause
    run_jobs(["notifications"])
    assert the_row(sms_runtime, job_id)["status"] == "sent" and len(fake_twilio.messages) == 1


def test_a_lookup_refused_for_credentials_keeps_the_row_unknown_and_never_parks_it(client, sms_runtime,
                                                                                   run_jobs, fake_twilio):
    job_id, _ = completed_job(client, sms_runtime, run_jobs)
    notification_id = the_row(sms_runtime, job_id)["id"]
    fake_twilio.script("timeout_after_create")
    assert notify.send(notification_id) == "unknown"
    fake_twilio.refuse_credentials()
    time_passes(sms_runtime, notification_id, 25 * 3600)  # past the deadline: a refused look-up does not park
    make_due(sms_runtime, notification_id)
    assert notify.send(notification_id) == "paused"
    row = the_row(sms_runtime, job_id)
    assert row["status"] == "unknown" and row["next_attempt_at"] is not None and row["last_error_code"] == "20003"
    fake_twilio.accept_credentials()
    with_settings(sms_runtime)  # a restarted worker
    make_due(sms_runtime, notification_id)
    assert notify.send(notification_id) == "adopted"
    assert len(fake_twilio.messages) == 1 and len(posts(fake_twilio)) == 1


def datetime_now(runtime):
    with runtime.engine.connect() as conn:
        return conn.execute(sa.text("SELECT now()")).scalar()


# -- operator commands ---------------------------------------------------------------------------------------


def sms_cli(*args: str, runtime):
    from click.testing import CliRunner

    from searchjobs.cli import main

    settings = runtime.settings
    env = {"DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url,
           "SECRET_KEY": settings.secret_key, "SEARCHJOBS_LOG_FORMAT": "text"}
    return CliRunner().invoke(main, ["sms", *args], env=env)


def test_sms_list_shows_rows_masked_with_a_status_filter_and_json(client, sms_runtime, run_jobs, fake_twilio):
    import json

    sent_job, _ = completed_job(client, sms_runtime, run_jobs)
    run_jobs(["notifications"])
    fake_twilio.script(("error", 400, 21610))
    failed_job, _ = completed_job(client, sms_runtime, run_jobs)
    run_jobs(["notifications"])

    table = sms_cli("list", runtime=sms_runtime)
    assert table.exit_code == 0, table.output
    assert "sent" in table.output and "failed" in table.output and "21610" in table.output
    assert NATIONAL_DIGITS not in table.output

    result = sms_cli("list", "--status", "failed", "--json", runtime=sms_runtime)
    assert result.exit_code == 0, result.output
    [row] = json.loads(result.output)
    assert row["job_id"] == failed_job and row["status"] == "failed" and row["to"] == "+33 6•• •• •• 78"
    assert row["parked"] is False and NATIONAL_DIGITS not in result.output

    assert sms_cli("list", "--status", "lost", runtime=sms_runtime).exit_code == 2


def test_sms_retry_answers_bad_input_clearly(client, sms_runtime, run_jobs, fake_twilio):
    sent_job, _ = completed_job(client, sms_runtime, run_jobs)
    run_jobs(["notifications"])
    sent_id = the_row(sms_runtime, sent_job)["id"]
    fake_twilio.script("timeout_after_create")
    waiting_job, _ = completed_job(client, sms_runtime, run_jobs)
    run_jobs(["notifications"])
    waiting_id = the_row(sms_runtime, waiting_job)["id"]

    cases = [
        ((), 2, "give one ID, or --all-failed"),
        ((str(sent_id), "--all-failed"), 2, "give one ID, or --all-failed"),
        (("seven",), 2, "is not a valid integer"),
        (("999999",), 1, "no SMS row 999999"),
        ((str(sent_id),), 1, f"SMS {sent_id} is sent; only failed or parked unknown rows can be retried"),
        ((str(waiting_id),), 1, "its provider look-up is still scheduled"),
    ]
    for args, code, text in cases:
        result = sms_cli("retry", *args, runtime=sms_runtime)
        assert result.exit_code == code, (args, result.output)
        assert text in result.output, (args, result.output)
    assert the_row(sms_runtime, waiting_job)["status"] == "unknown"
    assert len(fake_twilio.messages) == 2


def test_sms_retry_all_failed_sends_what_the_provider_never_accepted(client, sms_runtime, run_jobs, fake_twilio):
    rejected = []
    for _ in range(2):
        fake_twilio.script(("error", 400, 21610))
        job_id, _ = completed_job(client, sms_runtime, run_jobs)
        run_jobs(["notifications"])
        rejected.append(job_id)
    carrier_failed, _ = completed_job(client, sms_runtime, run_jobs)
    run_jobs(["notifications"])
    row = the_row(sms_runtime, carrier_failed)
    assert post_callback(client, callback_params(row["provider_sid"], "failed", "30008")).status_code == 200
    assert the_row(sms_runtime, carrier_failed)["status"] == "failed"

    result = sms_cli("retry", "--all-failed", runtime=sms_runtime)
    assert result.exit_code == 0, result.output
    ids = [the_row(sms_runtime, j)["id"] for j in rejected]
    assert result.output.splitlines() == [f"SMS {i}: pending, enqueued" for i in ids]
    run_jobs(["notifications"])
    assert [the_row(sms_runtime, j)["status"] for j in rejected] == ["sent", "sent"]
    assert the_row(sms_runtime, carrier_failed)["status"] == "failed"  # by id only
    assert len(fake_twilio.messages) == 3

    # by id: the carrier's failure is sent again, as a new message with its own sid
    carrier_id = the_row(sms_runtime, carrier_failed)["id"]
    assert sms_cli("retry", str(carrier_id), runtime=sms_runtime).exit_code == 0
    run_jobs(["notifications"])
    row = the_row(sms_runtime, carrier_failed)
    assert row["status"] == "sent" and row["provider_sid"] == fake_twilio.messages[-1]["sid"]
    assert sms_cli("retry", "--all-failed", runtime=sms_runtime).output.strip() == "no failed SMS to retry"
