"""The operator commands as an on-call engineer runs them: a real `searchjobs` process each time.

Exit codes: 0 ok; 1 when the thing asked for cannot be done (no such job, wrong state) or when
Postgres or Redis is unreachable; 2 for usage and configuration errors.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from searchjobs.embedded import free_port
from tests.conftest import TEST_SECRET
from tests.integration.test_core_loop import submit_upload

pytestmark = pytest.mark.slow


@pytest.fixture
def cli(settings):
    def run(*args: str, **env_changes: str) -> subprocess.CompletedProcess:
        env = {**os.environ, "DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url,
               "SECRET_KEY": TEST_SECRET, "SEARCHJOBS_LOG_FORMAT": "json", **env_changes}
        return subprocess.run([sys.executable, "-m", "searchjobs", *args], env=env, capture_output=True,
                              text=True, timeout=60)

    return run


def test_status_reports_queues_workers_jobs_failures_and_the_outbox(cli, client, runtime, run_jobs):
    submit_upload(client, categories="dress", phone_number="06 12 34 56 78", country_code="33")
    run_jobs()
    submit_upload(client, categories="shoes")  # left waiting on the queue
    failed = submit_upload(client, categories="top").get_json()["job_id"]
    with runtime.engine.begin() as conn:  # as if it had failed for good
        conn.exec_driver_sql("UPDATE search_jobs SET status = 'failed', error_code = 'image_unreadable', "
                             "error = 'not an image', finished_at = now() WHERE job_id = %s", (failed,))

    result = cli("status", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["postgres"]["ok"] and report["redis"]["ok"]
    queues = {q["queue"]: q for q in report["queues"]}
    assert queues["searches"]["depth"] == 2 and queues["searches"]["oldest_age_s"] is not None
    assert report["workers"] == []  # run_jobs' burst worker is gone
    assert report["jobs"]["last_hour"] == {"completed": 1, "pending": 1, "failed": 1}
    assert report["jobs"]["unfinished"]["pending"]["count"] == 1
    assert [(f["job_id"], f["error_code"]) for f in report["failed_jobs"]] == [(failed, "image_unreadable")]
    assert report["sms_outbox"] == {"sent": 1}
    assert any("no RQ worker" in w for w in report["warnings"])

    table = cli("status")
    assert table.returncode == 0, table.stderr
    for heading in ("Postgres: ok", "Redis: ok", "Queues", "Workers (0)", "Jobs", "Failed in the last day",
                    "SMS outbox", "attention: no RQ worker"):
        assert heading in table.stdout


def test_status_exits_1_when_a_server_is_unreachable_and_prints_the_rest(cli, runtime):
    result = cli("status", "--json", REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert not report["redis"]["ok"] and "Connection" in report["redis"]["error"]
    assert report["queues"] is None and report["postgres"]["ok"] and report["jobs"] is not None

    result = cli("status", DATABASE_URL=f"postgresql://postgres@127.0.0.1:{free_port()}/searchjobs")
    assert result.returncode == 1
    assert "Postgres: UNREACHABLE" in result.stdout and "Redis: ok" in result.stdout and "Queues" in result.stdout


def test_jobs_commands_answer_with_clear_messages_and_exit_codes(cli, client, runtime, run_jobs):
    job_id = submit_upload(client, categories="dress").get_json()["job_id"]
    run_jobs()

    shown = cli("jobs", "show", job_id)
    assert shown.returncode == 0 and "completed" in shown.stdout
    listed = cli("jobs", "list", "--json")
    assert listed.returncode == 0 and json.loads(listed.stdout)[0]["job_id"] == job_id

    missing = cli("jobs", "show", "no-such-job")
    assert missing.returncode == 1 and "no job no-such-job" in missing.stderr
    assert "Traceback" not in missing.stderr

    cancel = cli("jobs", "cancel", job_id)
    assert cancel.returncode == 1 and "already completed" in cancel.stderr
    retry = cli("jobs", "retry", job_id)
    assert retry.returncode == 1 and "only failed or cancelled jobs can be retried" in retry.stderr

    pending = submit_upload(client, categories="shoes").get_json()["job_id"]
    cancelled = cli("jobs", "cancel", pending)
    assert cancelled.returncode == 0 and cancelled.stdout.strip() == f"{pending}: cancelled"
    requeued = cli("jobs", "retry", pending)
    assert requeued.returncode == 0 and requeued.stdout.strip() == f"{pending}: requeued"

    down = cli("jobs", "list", DATABASE_URL=f"postgresql://postgres@127.0.0.1:{free_port()}/searchjobs")
    assert down.returncode == 1 and "Postgres is unreachable" in down.stderr and "Traceback" not in down.stderr


def test_cleanup_and_keys_report_what_they_did(cli, runtime):
    dry = cli("cleanup", "--dry-run")
    assert dry.returncode == 0 and dry.stdout.startswith("would delete: 0 jobs")
    done = cli("cleanup")
    assert done.returncode == 0 and done.stdout.startswith("deleted: 0 jobs")

    created = cli("keys", "create", "ops-test")
    assert created.returncode == 0 and created.stdout.strip().startswith("sjk_")
    assert "shown only now" in created.stderr
    revoked = cli("keys", "revoke", "ops-test")
    assert revoked.returncode == 0 and "revoked" in revoked.stdout
    again = cli("keys", "revoke", "ops-test")
    assert again.returncode == 1 and "no active key" in again.stderr


def test_a_bad_log_format_is_a_usage_error_not_a_traceback(cli):
    result = cli("status", SEARCHJOBS_LOG_FORMAT="xml")
    assert result.returncode == 2
    assert "SEARCHJOBS_LOG_FORMAT" in result.stderr and "Traceback" not in result.stderr
