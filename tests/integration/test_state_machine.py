"""The job state machine in-process: version checks, cancellation, retries, idempotency, timeouts,
leases and retention (real Postgres and Redis; workers run in this process)."""

from __future__ import annotations

import dataclasses
import io
import logging
import threading
import time

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from searchjobs import clients, service
from searchjobs.jobs.lifecycle import JobAttempt, JobCancelled, LostOwnership
from searchjobs.queue import is_waiting, rq_job_id
from searchjobs.worker.cleanup import cleanup
from searchjobs.worker.reconciler import reconcile
from tests.conftest import demo_image_bytes
from tests.faults.slow_backend import SlowBackend
from tests.integration.test_core_loop import events_of, row_of, submit_upload


def new_job(client, **fields) -> str:
    response = submit_upload(client, **fields)
    assert response.status_code == 202, response.get_json()
    return response.get_json()["job_id"]


def sql(runtime, statement: str, **params):
    with runtime.engine.begin() as conn:
        return conn.execute(sa.text(statement), params)


def expire_lease(runtime, job_id: str) -> None:
    """What the clock does to a worker that stopped renewing: its lease lies in the past."""
    sql(runtime, "UPDATE search_jobs SET lease_expires_at = now() - interval '1 second' WHERE job_id = :j", j=job_id)


def api_key(runtime, name: str = "shop", admin: bool = False) -> dict:
    with runtime.engine.begin() as conn:
        _, key = clients.create(conn, name, is_admin=admin)
    return {"Authorization": f"Bearer {key}"}


def cli_env(runtime) -> dict:
    settings = runtime.settings
    return {"DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url,
            "SECRET_KEY": settings.secret_key, "SEARCHJOBS_LOG_FORMAT": "text"}


# -- version checks ------------------------------------------------------------------


def test_stale_attempt_is_refused_and_logged(client, runtime, caplog):
    job_id = new_job(client)
    stale = JobAttempt.claim(runtime, job_id)
    expire_lease(runtime, job_id)
    assert reconcile(runtime).expired == 1  # presumed dead: back to pending

    runtime.worker_name = "another-worker"
    fresh = JobAttempt.claim(runtime, job_id)
    assert fresh.attempt == stale.attempt + 1
    before = row_of(runtime, job_id)

    with caplog.at_level(logging.WARNING, logger="searchjobs.jobs.lifecycle"):
        with pytest.raises(LostOwnership):
            stale.step(15, "image_loaded")
        with pytest.raises(LostOwnership):
            stale.complete({"categories": {}, "took_ms": 1}, None)
    assert [r for r in caplog.records if "stale attempt" in r.getMessage()]
    after = row_of(runtime, job_id)
    assert after["version"] == before["version"] and after["status"] == "processing"
    assert after["results"] is None and after["worker_name"] == "another-worker"

    fresh.step(15, "image_loaded")  # the owner goes on undisturbed
    assert row_of(runtime, job_id)["stage"] == "image_loaded"


def test_cancel_loses_to_complete_with_409_and_the_current_state(client, runtime):
    job_id = new_job(client)
    attempt = JobAttempt.claim(runtime, job_id)
    attempt.complete({"categories": {}, "took_ms": 1}, None)

    response = client.post(f"/api/search-jobs/{job_id}/cancel")
    assert response.status_code == 409
    body = response.get_json()["error"]
    assert body["code"] == "job_finished" and body["job"]["status"] == "completed"
    assert row_of(runtime, job_id)["status"] == "completed"


def test_complete_loses_to_cancel_and_the_job_ends_cancelled(client, runtime):
    job_id = new_job(client, phone_number="06 12 34 56 78", country_code="33")
    attempt = JobAttempt.claim(runtime, job_id)
    attempt.step(95, "ranked")

    response = client.post(f"/api/search-jobs/{job_id}/cancel")
    assert response.status_code == 202 and response.get_json()["cancel_requested"] is True
    # the request moved the version, so the cached view shows it too
    assert client.get(f"/api/search-jobs/{job_id}").get_json()["cancel_requested"] is True

    with pytest.raises(JobCancelled):
        attempt.complete({"categories": {}, "took_ms": 1}, "your results")
    row = row_of(runtime, job_id)
    assert row["status"] == "cancelled" and row["results"] is None
    kinds = [e["kind"] for e in events_of(runtime, job_id)]
    assert kinds[-1] == "cancelled" and "completed" not in kinds
    with runtime.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM notifications WHERE job_id = :j"),
                            {"j": job_id}).scalar() == 0


# -- cancellation ----------------------------------------------------------------------


def test_cancelled_queued_job_never_starts(client, runtime, run_jobs):
    job_id = new_job(client)
    response = client.post(f"/api/search-jobs/{job_id}/cancel")
    assert response.status_code == 200 and response.get_json()["status"] == "cancelled"
    run_jobs(["searches"])  # its pointer is still in Redis: the claim refuses it
    row = row_of(runtime, job_id)
    assert row["status"] == "cancelled" and row["attempts"] == 0 and row["started_at"] is None
    assert [e["kind"] for e in events_of(runtime, job_id)] == ["created", "cancelled"]


def test_running_job_stops_at_its_next_step(client, runtime):
    job_id = new_job(client, categories="dress,shoes")
    attempt = JobAttempt.claim(runtime, job_id)
    attempt.step(15, "image_loaded")
    assert client.post(f"/api/search-jobs/{job_id}/cancel").status_code == 202
    assert row_of(runtime, job_id)["status"] == "processing"  # running until its next step

    with pytest.raises(JobCancelled):
        attempt.step(30, "features")
    row = row_of(runtime, job_id)
    assert row["status"] == "cancelled" and row["finished_at"] is not None
    assert row["stage"] == "image_loaded"  # the refused step wrote nothing
    assert client.post(f"/api/search-jobs/{job_id}/cancel").status_code == 409


def test_failure_while_cancel_requested_ends_cancelled(client, runtime):
    job_id = new_job(client)
    attempt = JobAttempt.claim(runtime, job_id)
    client.post(f"/api/search-jobs/{job_id}/cancel")
    with pytest.raises(JobCancelled):
        attempt.retry_later("image_fetch_timeout", "slow host")
    assert row_of(runtime, job_id)["status"] == "cancelled"


# -- retries -----------------------------------------------------------------------------


def test_failed_job_is_retried_by_its_owner_over_the_api(client, runtime, run_jobs):
    headers = api_key(runtime)
    response = client.post("/api/search-jobs", headers=headers, content_type="multipart/form-data", data={
        "categories": "dress", "image": (io.BytesIO(demo_image_bytes(0, "dress")), "p.png")})
    job_id = response.get_json()["job_id"]
    JobAttempt.claim(runtime, job_id).fail("image_unreadable", "pretend the image host broke")

    assert client.post(f"/api/search-jobs/{job_id}/retry").status_code == 404  # anonymous: not even visible
    other = api_key(runtime, "other shop")
    assert client.post(f"/api/search-jobs/{job_id}/retry", headers=other).status_code == 404
    response = client.post(f"/api/search-jobs/{job_id}/retry", headers=headers)
    assert response.status_code == 202 and response.get_json()["status"] == "pending"
    assert is_waiting(runtime.redis, rq_job_id(job_id, 0))

    run_jobs(["searches"])
    row = row_of(runtime, job_id)
    assert row["status"] == "completed" and row["error"] is None
    retried = [e for e in events_of(runtime, job_id) if e["kind"] == "retried"]
    assert len(retried) == 1
    response = client.post(f"/api/search-jobs/{job_id}/retry", headers=headers)
    assert response.status_code == 409 and response.get_json()["error"]["job"]["status"] == "completed"


def test_failed_job_is_retried_from_the_command_line(client, runtime, run_jobs):
    from searchjobs.cli import main

    job_id = new_job(client)
    JobAttempt.claim(runtime, job_id).fail("image_unreadable", "pretend")
    result = CliRunner().invoke(main, ["jobs", "retry", job_id], env=cli_env(runtime))
    assert result.exit_code == 0, result.output
    assert "requeued" in result.output
    run_jobs(["searches"])
    assert row_of(runtime, job_id)["status"] == "completed"

    result = CliRunner().invoke(main, ["jobs", "retry", job_id], env=cli_env(runtime))
    assert result.exit_code == 1 and "completed" in result.output


def test_transient_failure_backs_off_then_gives_up(client, runtime):
    runtime.settings = dataclasses.replace(runtime.settings, max_attempts=2)
    job_id = new_job(client)
    JobAttempt.claim(runtime, job_id).retry_later("image_fetch_timeout", "slow host")
    row = row_of(runtime, job_id)
    assert row["status"] == "pending" and row["error_code"] == "image_fetch_timeout"
    assert row["run_after"] > row["updated_at"]  # a backoff, not an immediate re-run

    sql(runtime, "UPDATE search_jobs SET run_after = now() WHERE job_id = :j", j=job_id)
    assert job_id in reconcile(runtime).requeued  # due: the scheduler enqueues it
    JobAttempt.claim(runtime, job_id).retry_later("image_fetch_timeout", "slow host")
    row = row_of(runtime, job_id)
    assert row["status"] == "failed" and row["attempts"] == 2 and "gave up after 2" in row["error"]
    kinds = [(e["kind"], e["status"]) for e in events_of(runtime, job_id)]
    assert kinds == [("created", "pending"), ("claimed", "processing"), ("retried", "pending"),
                     ("claimed", "processing"), ("failed", "failed")]


# -- idempotent submits -------------------------------------------------------------------


def test_idempotency_key_replays_within_24h_and_rejects_another_body(client, runtime, image_server):
    url = image_server(demo_image_bytes(0, "bag"))
    body = {"image_url": url, "categories": ["bag"]}
    first = client.post("/api/search-jobs", json=body, headers={"Idempotency-Key": "order-17"})
    again = client.post("/api/search-jobs", json=body, headers={"Idempotency-Key": "order-17"})
    assert first.status_code == again.status_code == 202
    job_id = first.get_json()["job_id"]
    assert again.get_json()["job_id"] == job_id and again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json()["result_url"] == first.get_json()["result_url"]

    other = client.post("/api/search-jobs", json={**body, "categories": ["dress"]},
                        headers={"Idempotency-Key": "order-17"})
    assert other.status_code == 409 and other.get_json()["error"]["code"] == "idempotency_key_reused"

    # another client's key space is its own
    keyed = client.post("/api/search-jobs", json=body, headers={"Idempotency-Key": "order-17", **api_key(runtime)})
    assert keyed.status_code == 202 and keyed.get_json()["job_id"] != job_id

    # past the window the key is free again: a new job
    sql(runtime, "UPDATE search_jobs SET created_at = now() - interval '25 hours' WHERE job_id = :j", j=job_id)
    later = client.post("/api/search-jobs", json=body, headers={"Idempotency-Key": "order-17"})
    assert later.status_code == 202 and later.get_json()["job_id"] != job_id
    assert "Idempotent-Replayed" not in later.headers
    with runtime.engine.connect() as conn:
        count = conn.execute(sa.text("SELECT count(*) FROM search_jobs WHERE client_id IS NULL")).scalar()
    assert count == 2


# -- timeouts --------------------------------------------------------------------------------


def test_job_past_its_timeout_is_stopped_retried_then_failed(client, runtime, run_jobs):
    runtime.settings = dataclasses.replace(runtime.settings, job_timeout=1, max_attempts=2)
    runtime.__dict__["search_backend"] = SlowBackend(runtime.search_backend, seconds=3)
    job_id = new_job(client)

    started = time.monotonic()
    run_jobs(["searches"])
    assert time.monotonic() - started < 3  # stopped, not waited out
    row = row_of(runtime, job_id)
    assert row["status"] == "pending" and row["error_code"] == "job_timeout"

    sql(runtime, "UPDATE search_jobs SET run_after = now() WHERE job_id = :j", j=job_id)
    reconcile(runtime)
    run_jobs(["searches"])
    row = row_of(runtime, job_id)
    assert row["status"] == "failed" and row["error_code"] == "job_timeout" and row["attempts"] == 2
    events = events_of(runtime, job_id)
    assert [e["kind"] for e in events if e["kind"] in ("retried", "failed")] == ["retried", "failed"]
    with runtime.engine.connect() as conn:
        details = conn.execute(sa.text("SELECT detail FROM search_job_events WHERE job_id = :j AND kind = 'retried'"),
                               {"j": job_id}).scalar()
    assert details["error_code"] == "job_timeout"


# -- leases ----------------------------------------------------------------------------------


def test_expired_lease_requeues_at_once_then_fails_after_max_attempts(client, runtime):
    runtime.settings = dataclasses.replace(runtime.settings, max_attempts=2)
    job_id = new_job(client)
    JobAttempt.claim(runtime, job_id).step(15, "image_loaded")
    expire_lease(runtime, job_id)

    report = reconcile(runtime)
    assert report.expired == 1 and job_id in report.requeued  # enqueued in the same pass
    row = row_of(runtime, job_id)
    assert row["status"] == "pending" and row["progress"] == 15 and row["worker_name"] is None
    assert is_waiting(runtime.redis, rq_job_id(job_id, 1))

    JobAttempt.claim(runtime, job_id)
    expire_lease(runtime, job_id)
    reconcile(runtime)
    row = row_of(runtime, job_id)
    assert row["status"] == "failed" and row["error_code"] == "worker_lost" and row["attempts"] == 2
    kinds = [e["kind"] for e in events_of(runtime, job_id)]
    assert kinds == ["created", "claimed", "progress", "retried", "claimed", "failed"]
    progress = [e["progress"] for e in events_of(runtime, job_id)]
    assert progress == sorted(progress)


def test_live_lease_is_left_alone_and_a_cancelled_orphan_ends_cancelled(client, runtime):
    alive, orphan = new_job(client), new_job(client)
    JobAttempt.claim(runtime, alive)
    JobAttempt.claim(runtime, orphan)
    client.post(f"/api/search-jobs/{orphan}/cancel")
    expire_lease(runtime, orphan)
    assert reconcile(runtime).expired == 1
    assert row_of(runtime, alive)["status"] == "processing"
    assert row_of(runtime, orphan)["status"] == "cancelled"  # not pending forever, never re-run


def test_no_lease_expiry_while_the_scheduler_says_so(client, runtime):
    job_id = new_job(client)
    JobAttempt.claim(runtime, job_id)
    expire_lease(runtime, job_id)
    assert reconcile(runtime, expire=False).expired == 0
    assert row_of(runtime, job_id)["status"] == "processing"


# -- retention --------------------------------------------------------------------------------


def test_cleanup_deletes_old_finished_jobs_in_batches_and_reports_counts(client, runtime, run_jobs):
    from searchjobs.cli import main

    old = [new_job(client) for _ in range(6)]
    with_phone = new_job(client, phone_number="06 12 34 56 78", country_code="33")
    run_jobs(["searches"])  # completed, with an outbox row for the one with a phone
    old.append(with_phone)
    recent_done = new_job(client)
    old_pending = new_job(client)
    sql(runtime, "UPDATE search_jobs SET status = 'completed' WHERE job_id = :j", j=recent_done)
    sql(runtime, "UPDATE search_jobs SET created_at = now() - interval '8 days' WHERE job_id = ANY(:ids)",
        ids=old + [old_pending])
    with runtime.engine.connect() as conn:
        old_events = conn.execute(sa.text("SELECT count(*) FROM search_job_events WHERE job_id = ANY(:ids)"),
                                  {"ids": old}).scalar()

    dry = cleanup(runtime, dry_run=True)
    assert (dry.jobs, dry.events, dry.notifications, dry.images) == (7, old_events, 1, 7)
    result = CliRunner().invoke(main, ["cleanup", "--dry-run"], env=cli_env(runtime))
    assert result.exit_code == 0, result.output
    assert f"would delete: 7 jobs, {old_events} events, 1 notifications, 7 images" in result.output
    with runtime.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM search_jobs")).scalar() == 9

    report = cleanup(runtime, batch=3)
    assert (report.jobs, report.images, report.batches) == (7, 7, 3)
    assert report.events == old_events and report.notifications == 1
    with runtime.engine.connect() as conn:
        left = set(conn.execute(sa.text("SELECT job_id FROM search_jobs")).scalars())
        orphans = conn.execute(sa.text(
            "SELECT (SELECT count(*) FROM search_job_events WHERE job_id = ANY(:ids)) + "
            "(SELECT count(*) FROM notifications WHERE job_id = ANY(:ids))"), {"ids": old}).scalar()
        images = conn.execute(sa.text("SELECT count(*) FROM images")).scalar()
    assert left == {recent_done, old_pending} and orphans == 0 and images == 2
    assert cleanup(runtime).jobs == 0


def test_a_stopped_scheduler_ends_its_cleanup_after_the_batch_in_progress(client, runtime, run_jobs):
    """SIGTERM sets the scheduler's stop event: a long backlog must not hold its exit; the next run goes on."""
    old = [new_job(client) for _ in range(7)]
    run_jobs(["searches"])
    sql(runtime, "UPDATE search_jobs SET created_at = now() - interval '8 days' WHERE job_id = ANY(:ids)", ids=old)
    stop = threading.Event()
    stop.set()
    first = cleanup(runtime, batch=3, stop=stop)
    assert (first.jobs, first.batches) == (3, 1)
    with runtime.engine.connect() as conn:  # the lock was given back
        assert conn.execute(sa.text("SELECT count(*) FROM scheduler_locks WHERE name = 'cleanup'")).scalar() == 0
    rest = cleanup(runtime, batch=3)
    assert (rest.jobs, rest.batches) == (4, 2)


# -- fencing ---------------------------------------------------------------------------


def test_each_claim_draws_a_fresh_fencing_token(client, runtime):
    job_id = new_job(client)
    first = JobAttempt.claim(runtime, job_id)
    expire_lease(runtime, job_id)
    reconcile(runtime)
    assert row_of(runtime, job_id)["claim_token"] is None  # the reconciler's requeue clears it
    second = JobAttempt.claim(runtime, job_id)
    assert first.token and second.token and first.token != second.token


def test_a_manual_retry_that_resets_attempts_never_lets_the_old_attempt_write(client, runtime):
    job_id = new_job(client)
    old = JobAttempt.claim(runtime, job_id)
    old.fail("bad_image", "for the test")  # failed: an operator retries it, attempts go back to 0
    service.retry(runtime, job_id, by="operator")
    new = JobAttempt.claim(runtime, job_id)
    assert (new.attempt, new.rt.worker_name) == (old.attempt, old.rt.worker_name)  # only the token differs
    events_before = len(events_of(runtime, job_id))
    old.row = {**old.row, "version": new.version}  # even with the current version in hand
    with pytest.raises(LostOwnership):
        old.step(50, "features")
    assert row_of(runtime, job_id)["stage"] == "claimed"
    assert len(events_of(runtime, job_id)) == events_before
    new.step(50, "features")  # the real owner goes on


def test_a_lost_lease_stops_the_attempt_at_its_next_step_without_writing(client, runtime):
    from searchjobs.jobs import store as job_queries

    job_id = new_job(client)
    attempt = JobAttempt.claim(runtime, job_id)
    expire_lease(runtime, job_id)
    reconcile(runtime)  # the worker was presumed dead
    with runtime.db.connect() as conn:
        assert not job_queries.renew_lease(conn, job_id, attempt.token, 20)  # what the lease keeper sees
    attempt.lease_lost.set()
    before = row_of(runtime, job_id)
    cached = runtime.cache.read(job_id)
    with pytest.raises(LostOwnership):
        attempt.step(15, "image_loaded")
    with pytest.raises(LostOwnership):
        attempt.complete({"categories": {}}, None)
    assert row_of(runtime, job_id)["version"] == before["version"]
    assert runtime.cache.read(job_id) == cached


def test_the_lease_keeper_marks_a_lost_lease(client, runtime):
    from searchjobs.worker.worker import LeaseKeeper

    runtime.settings = dataclasses.replace(runtime.settings, heartbeat_interval=0.05)
    job_id = new_job(client)
    attempt = JobAttempt.claim(runtime, job_id)
    keeper = LeaseKeeper(runtime)
    keeper.start()
    try:
        time.sleep(0.2)
        assert not attempt.lease_lost.is_set()  # renewed while it is ours
        # the keeper renews every 0.05 s: one renewal between the expiry and the pass would undo it,
        # so expire until a pass takes the job away (a renewal after that matches nothing)
        for _ in range(50):
            expire_lease(runtime, job_id)
            if reconcile(runtime).expired:
                break
        else:
            raise AssertionError("the reconciler never took the lease away")
        deadline = time.monotonic() + 3
        while not attempt.lease_lost.is_set() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert attempt.lease_lost.is_set()
    finally:
        keeper.stopped.set()
        runtime.current_attempt = None


def test_one_reconciler_pass_at_a_time_and_a_dead_holder_is_taken_over(runtime):
    from searchjobs.db import locks
    from searchjobs.worker.reconciler import RECONCILE_LOCK

    with runtime.db.connect() as conn:
        assert locks.acquire(conn, RECONCILE_LOCK, "other-scheduler", 30)
    assert reconcile(runtime).skipped  # another scheduler's pass is running
    sql(runtime, "UPDATE scheduler_locks SET expires_at = now() - interval '1 second'")  # ... and it died
    assert not reconcile(runtime).skipped
    assert sql(runtime, "SELECT count(*) FROM scheduler_locks").scalar() == 0  # released after the pass


def test_a_claim_whose_answer_was_lost_is_recognised_by_its_token(client, runtime, monkeypatch):
    from searchjobs.jobs import store as job_queries

    job_id = new_job(client)
    real_claim, dropped = job_queries.claim, []

    def claim_then_lose_the_answer(conn, *args, **kwargs):
        row = real_claim(conn, *args, **kwargs)
        if not dropped:  # committed, but the connection drops before the answer arrives
            dropped.append(row)
            raise sa.exc.OperationalError("claim", {}, Exception("server closed the connection unexpectedly"))
        return row

    monkeypatch.setattr(job_queries, "claim", claim_then_lose_the_answer)
    attempt = JobAttempt.claim(runtime, job_id)
    assert dropped and attempt is not None  # adopted, not left to wait out its lease
    assert attempt.token == str(row_of(runtime, job_id)["claim_token"])
    assert [e["kind"] for e in events_of(runtime, job_id)].count("claimed") == 1
    attempt.step(15, "image_loaded")  # and it owns the job
