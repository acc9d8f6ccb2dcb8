"""The real processes: `searchjobs web` (gunicorn) and `searchjobs worker` as subprocesses, over HTTP."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import requests
import sqlalchemy as sa

from searchjobs.embedded import free_port
from tests.conftest import TEST_SECRET, demo_image_bytes, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def processes(runtime, settings, tmp_path):
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "SECRET_KEY": TEST_SECRET,
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        "WEB_CONCURRENCY": "1",
        "SEARCHJOBS_LOG_FORMAT": "json",
    }
    started: list[subprocess.Popen] = []

    def start(*args: str) -> subprocess.Popen:
        with open(tmp_path / f"{args[0]}-{len(started)}.log", "wb") as log:
            proc = subprocess.Popen([sys.executable, "-m", "searchjobs", *args], env=env, stdout=log,
                                    stderr=subprocess.STDOUT)
        started.append(proc)
        return proc

    start("web", "--host", "127.0.0.1", "--port", str(port))
    start("worker")
    base = f"http://127.0.0.1:{port}"

    def healthy():
        try:
            return requests.get(f"{base}/healthz", timeout=1).status_code == 200
        except requests.ConnectionError:
            return False

    wait_for(healthy, 30, what="the web process")
    yield base
    for proc in started:
        proc.send_signal(signal.SIGTERM)
    for proc in started:
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_job_submitted_over_http_completes_with_every_step_persisted(processes, runtime):
    base = processes
    response = requests.post(
        f"{base}/api/search-jobs",
        files={"image": ("photo.png", demo_image_bytes(2, "dress"), "image/png")},
        data={"categories": "dress,top"},
        timeout=10,
    )
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]

    def finished():
        body = requests.get(f"{base}/api/search-jobs/{job_id}", timeout=5).json()
        return body if body["status"] in ("completed", "failed") else None

    body = wait_for(finished, 60, interval=0.2, what="the job to finish")
    assert body["status"] == "completed" and body["progress"] == 100

    with runtime.engine.connect() as conn:
        row = conn.execute(sa.text("SELECT * FROM search_jobs WHERE job_id = :j"), {"j": job_id}).mappings().one()
        events = conn.execute(sa.text("SELECT kind, status, progress, stage, version FROM search_job_events "
                                      "WHERE job_id = :j ORDER BY id"), {"j": job_id}).mappings().all()
    # every step, once each and in order
    assert [e["stage"] for e in events] == ["queued", "claimed", "image_loaded", "features", "searched:dress",
                                            "searched:top", "ranked", "done"]
    progress = [e["progress"] for e in events]
    assert progress == sorted(progress)
    assert row["status"] == "completed" and row["progress"] == 100 and row["attempts"] == 1
    assert row["version"] == events[-1]["version"] and row["stage"] == "done"
    assert set(row["results"]["categories"]) == {"dress", "top"}
    assert row["worker_name"] and row["started_at"] <= row["finished_at"]
    # a second read is served from the cache, with the same view
    again = requests.get(f"{base}/api/search-jobs/{job_id}", timeout=5)
    assert again.headers["X-Cache"] == "hit" and again.json()["version"] == row["version"]
