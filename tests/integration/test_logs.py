"""Logs an operator can rely on: one line per job transition with job_id and attempt, no secrets.

A job with a phone number runs end to end in this process (web app, RQ SimpleWorker in burst
mode, the reconciler, the real twilio client against tests.fake_twilio): its first attempt loses
its worker (lease expiry), the second completes and sends the SMS, and the result is read back.
Every record is then formatted as shipped (JSON and text, extras included) and searched for the
phone number and the result token.
"""

from __future__ import annotations

import dataclasses
import json
import logging

import pytest
import sqlalchemy as sa

from searchjobs.jobs.lifecycle import JobAttempt
from searchjobs.logs import JsonFormatter, TextFormatter
from searchjobs.worker.reconciler import reconcile
from tests.integration.test_core_loop import submit_upload

PHONE, COUNTRY = "06 12 34 56 78", "33"
PHONE_FORMS = ("612345678", "6 12 34 56 78", "06 12 34 56 78", "+33612345678", "0612345678")

# The messages that record a change of a job's status, and who logs them.
TRANSITIONS = {
    "job submitted",  # -> pending (jobs/submit.py)
    "job claimed",  # pending -> processing
    "job completed",
    "job failed",
    "job will be retried",  # processing -> pending, with a backoff
    "job released",  # processing -> pending (shutdown)
    "job cancelled at a progress step",
    "lease expired: job's worker is gone",  # processing -> pending or failed (worker/reconciler.py)
}


@pytest.fixture
def settings(settings, fake_twilio):
    """The shared settings, sending SMS through the fake Twilio with the real client."""
    return dataclasses.replace(
        settings, twilio_account_sid=fake_twilio.account_sid, twilio_auth_token=fake_twilio.auth_token,
        twilio_from_number="+15005550006", twilio_api_base_url=fake_twilio.base_url,
    )


def test_every_transition_is_one_line_with_job_id_and_attempt_and_no_secret_is_logged(
    client, runtime, run_jobs, fake_twilio, caplog, capfd,
):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.INFO, logger="urllib3")  # as logs.configure() sets it in every process

    response = submit_upload(client, phone_number=PHONE, country_code=COUNTRY)
    assert response.status_code == 202
    job_id = response.get_json()["job_id"]
    token = response.get_json()["result_url"].rsplit("/r/", 1)[1]

    # attempt 1 is claimed, then its worker "dies": the lease runs out and the reconciler requeues it
    assert JobAttempt.claim(runtime, job_id) is not None
    runtime.current_attempt = None
    with runtime.engine.begin() as conn:
        conn.execute(sa.text("UPDATE search_jobs SET lease_expires_at = now() - interval '1 second' "
                             "WHERE job_id = :j"), {"j": job_id})
    assert reconcile(runtime).expired == 1
    run_jobs()  # attempt 2 completes; the SMS is sent on the notifications queue in the same burst

    assert len(fake_twilio.messages) == 1
    assert client.get(f"/api/search-jobs/{job_id}").get_json()["status"] == "completed"
    assert client.get(f"/api/results/{token}").status_code == 200

    records = caplog.records
    transitions = [r for r in records if r.getMessage() in TRANSITIONS]
    for record in transitions:
        assert getattr(record, "job_id", None) == job_id, record.getMessage()
        assert isinstance(getattr(record, "attempt", None), int), record.getMessage()
    # one line per transition, in order, each with the attempt it belongs to
    assert [(r.getMessage(), r.attempt) for r in transitions] == [
        ("job submitted", 0),
        ("job claimed", 1),
        ("lease expired: job's worker is gone", 1),
        ("job claimed", 2),
        ("job completed", 2),
    ]
    json_lines = [json.loads(JsonFormatter().format(r)) for r in transitions]
    assert all(line["job_id"] == job_id and "attempt" in line for line in json_lines)

    # nothing anywhere: messages, extras, tracebacks, and whatever reached stdout/stderr
    captured = capfd.readouterr()
    shipped = [captured.out, captured.err, caplog.text]
    for formatter in (JsonFormatter(), TextFormatter()):
        shipped.append("\n".join(formatter.format(r) for r in records))
    text = "\n".join(shipped)
    for secret in (*PHONE_FORMS, token, token[:16]):
        assert secret not in text, [line for line in text.splitlines() if secret in line][:3]
    assert any(getattr(r, "to", None) == "+33 6•• •• •• 78" for r in records)  # the masked form is what is logged
