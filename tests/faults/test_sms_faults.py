"""SMS exactly once under provider faults, with real web, worker and scheduler processes.

The cluster is the one of tests/faults/test_faults.py (its own embedded Postgres and Valkey, a fake
Twilio on loopback, short timings), with TWILIO_TIMEOUT=2 and a 3 s look-up margin. The fake
chooses a fault by the last digits of the phone number, so one job can meet a fault while the
others do not. Each scenario prints its figure (`pytest -s`).
"""

from __future__ import annotations

import signal
import time

import pytest

from tests.faults.cluster import Cluster, record, running_cluster, wait_for

pytestmark = [pytest.mark.faults, pytest.mark.slow]

TIMEOUT, MARGIN, AUTH_RETRY = 2, 3, 1  # TWILIO_TIMEOUT, SEARCHJOBS_SMS_LOOKUP_MARGIN, ..._AUTH_RETRY_SECONDS
LATE_SUFFIX = "91"  # creates to numbers ending in these digits land late
# seconds the fake holds such a create before creating the message: we gave up at TIMEOUT, and a look-up
# any earlier than TIMEOUT + MARGIN (the old code's 2.5-5 s backoff, say) would find nothing and send again
LATE_BY = TIMEOUT + MARGIN - 0.5
WORKERS = 2


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    # no workers yet: each scenario starts its own, with the credentials it needs
    with running_cluster(tmp_path_factory.mktemp("sms-faults"), workers=0, TWILIO_TIMEOUT=str(TIMEOUT),
                         SEARCHJOBS_SMS_LOOKUP_MARGIN=str(MARGIN),
                         SEARCHJOBS_SMS_AUTH_RETRY_SECONDS=str(AUTH_RETRY)) as cluster:
        yield cluster


def submit_with_phone(cluster: Cluster, last_four: str) -> str:
    """POST one job whose phone number ends in `last_four`; returns its job id."""
    n = next(cluster.counter)
    response = cluster.request(
        "POST", "/api/search-jobs", "submit",
        data={"categories": "dress,top", "phone_number": f"06 12 34 {last_four[:2]} {last_four[2:]}",
              "country_code": "33"},
        files={"image": ("photo.png", cluster.images[n % len(cluster.images)], "image/png")})
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    cluster.jobs[job_id] = f"+3361234{last_four}"
    return job_id


def outbox(cluster: Cluster, ids: list[str]) -> dict[str, dict]:
    return {r["job_id"]: r for r in cluster.query("SELECT * FROM notifications WHERE job_id = ANY(:ids)", ids=ids)}


def stop(procs) -> None:
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        proc.wait(30)


def logs_text(cluster: Cluster) -> str:
    return "\n".join(p.read_text(errors="replace") for p in sorted(cluster.log_dir.glob("*.log")))


def assert_no_number_in_logs(cluster: Cluster, ids: list[str]) -> None:
    text = logs_text(cluster)
    for job_id in ids:
        national = cluster.jobs[job_id].removeprefix("+33")  # "612340091": any unmasked form contains it
        assert national not in text, job_id


def test_late_landing_create_is_adopted_exactly_once(cluster):
    cluster.keep_workers(WORKERS)
    cluster.fake.fault_for_suffix(LATE_SUFFIX, ("land_late", LATE_BY))  # every create to it, a resend too
    late = submit_with_phone(cluster, "00" + LATE_SUFFIX)
    others = [submit_with_phone(cluster, f"01{i:02d}") for i in range(3)]
    cluster.wait_finished([late] + others)

    def sent():
        found = outbox(cluster, [late]).get(late)
        return found if found is not None and found["status"] == "sent" else None
    row = wait_for(sent, LATE_BY + TIMEOUT + MARGIN + 15, "the late SMS to be adopted", interval=0.1)
    mine = cluster.fake.messages_to(cluster.jobs[late])
    assert len(mine) == 1 and row["provider_sid"] == mine[0]["sid"]
    assert row["attempts"] == 2  # the send, then one look-up once the request could no longer land
    creates = [p for _, method, p in cluster.fake.timed_requests if method == "POST"]
    assert len(creates) == 1 + len(others)  # never a second create
    cluster.check([late] + others)

    adopted_after = (row["sent_at"] - row["first_attempt_at"]).total_seconds()
    assert adopted_after >= TIMEOUT + MARGIN  # it waited for the request to be unable to land
    record("late-landing create: first send to the row adopted as sent", adopted_after)
    assert_no_number_in_logs(cluster, [late] + others)


def test_refused_credentials_pause_then_a_restart_with_good_ones_sends_each_once(cluster):
    stop(cluster.workers())
    good_env = cluster.env
    cluster.env = {**good_env, "TWILIO_AUTH_TOKEN": "rotated-away"}
    try:
        cluster.keep_workers(WORKERS)
    finally:
        cluster.env = good_env
    bad_workers = cluster.workers()
    ids = [submit_with_phone(cluster, f"02{i:02d}") for i in range(6)]
    cluster.wait_finished(ids)  # jobs complete; only their SMS wait

    def all_paused():
        rows = outbox(cluster, ids)
        return len(rows) == len(ids) and all(r["status"] == "pending" and r["last_error_code"] == "20003"
                                             for r in rows.values())
    wait_for(all_paused, 20, "every SMS to be paused on refused credentials", interval=0.2)
    time.sleep(AUTH_RETRY * 2)  # a few pauses go by: still nothing is sent, failed or lost
    rows = outbox(cluster, ids)
    # a paused row is re-claimed (`sending`) for its next try and put back (`pending`) in two statements:
    # either is "still waiting"; nothing may be sent, failed or parked
    assert all(r["status"] in ("pending", "sending") for r in rows.values()), {j: r["status"] for j, r in rows.items()}
    assert not any(cluster.fake.messages_to(cluster.jobs[j]) for j in ids)
    assert "Twilio refused our credentials" in logs_text(cluster)

    stop(bad_workers)
    restarted = time.time()
    cluster.keep_workers(WORKERS)  # with the fixed TWILIO_AUTH_TOKEN
    wait_for(lambda: all(r["status"] == "sent" for r in outbox(cluster, ids).values()), 30,
             "every paused SMS to be sent", interval=0.1)
    cluster.check(ids)
    for job_id in ids:
        assert len(cluster.fake.messages_to(cluster.jobs[job_id])) == 1
    last_sent = max(r["sent_at"].timestamp() for r in outbox(cluster, ids).values())
    record("refused credentials: worker restart with good ones to the last paused SMS sent",
           last_sent - restarted)
    assert_no_number_in_logs(cluster, ids)
