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

from searchjobs.jobs import links, notify
from searchjobs.jobs.runtime import Runtime, install
from searchjobs.logs import JsonFormatter, TextFormatter
from searchjobs.models import notifications as outbox
from searchjobs.queue import enqueue_notification, notification_queue
from searchjobs.worker.scheduler import reconcile
from tests.conftest import TEST_SECRET
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


def make_due(runtime, notification_id) -> None:
    """What waiting out the backoff would do, without the wait."""
    with runtime.engine.begin() as conn:
        conn.execute(sa.text("UPDATE notifications SET next_attempt_at = now() WHERE id = :id"),
                     {"id": notification_id})


def age_claim(runtime, notification_id) -> None:
    """What STALE_SENDING_SECONDS passing would do to a claim, without the wait (first_attempt_at stays)."""
    with runtime.engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE notifications SET claimed_at = claimed_at - make_interval(secs => :s) WHERE id = :id"),
            {"id": notification_id, "s": notify.STALE_SENDING_SECONDS + 1},
        )


def posts(fake) -> list[str]:
    return [path for method, path in fake.requests if method == "POST"]


def methods(fake) -> list[str]:
    return [method for method, _ in fake.requests]


def wait_for(condition, what: str, timeout: float = WAIT_SECONDS, proc: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"process exited ({proc.returncode}) while waiting for {what}")
        time.sleep(0.01)
    pytest.fail(f"timed out waiting for {what}")


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
    wait_for(lambda: posts(fake_twilio), "the first send to reach the fake")
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


def test_retry_after_an_unknown_outcome_keeps_looking_up(client, sms_runtime, run_jobs, fake_twilio):
    """unknown -> (look-up finds nothing, resend hits 429) -> the row stays `unknown`, the next try looks again."""
    job_id, _ = completed_job(client, sms_runtime, run_jobs)
    fake_twilio.script(("error", 500, 20500), ("error", 429, 20429))
    run_jobs(["notifications"])
    notification_id = the_row(sms_runtime, job_id)["id"]
    make_due(sms_runtime, notification_id)
    assert notify.send(notification_id) == "unknown"
    assert the_row(sms_runtime, job_id)["status"] == "unknown"
    make_due(sms_runtime, notification_id)
    assert notify.send(notification_id) == "sent"
    assert len(fake_twilio.messages) == 1
    # POST(500) | GET.. POST(429) | GET.. POST(ok)
    calls = methods(fake_twilio)
    assert calls.count("POST") == 3 and calls[calls.index("POST", 1) - 1] == "GET" and calls[-2] == "GET"


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
            wait_for(lambda: posts(fake_twilio), "the worker's send to reach the fake", proc=worker)
            assert the_row(sms_runtime, job_id)["status"] == "sending"
            worker.send_signal(signal.SIGKILL)
        finally:
            if worker.poll() is None:
                worker.kill()
            worker.wait(WAIT_SECONDS)
    assert worker.returncode == -signal.SIGKILL, log_path.read_text()

    wait_for(lambda: fake_twilio.messages, "the provider to create the held message")
    row = the_row(sms_runtime, job_id)
    assert row["status"] == "sending" and row["provider_sid"] is None  # exactly what the dead worker left
    age_claim(sms_runtime, notification_id)
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
