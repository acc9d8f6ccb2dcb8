"""The web process logs like every other process type: the real gunicorn, as the Procfile starts it.

The app's own lines (`job submitted`), gunicorn's error lines (start, workers) and one access line
per request all come out in our format: JSON lines when asked (or when stderr is not a terminal),
text otherwise. Access lines carry method, path, status and duration as fields; a result token in
a path is masked, and no header (API keys) or query string is logged.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys

import pytest
import requests

from searchjobs.embedded import free_port
from tests.conftest import TEST_SECRET, demo_image_bytes, wait_for

pytestmark = pytest.mark.slow

TEXT_LINE = re.compile(r"^\d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR|CRITICAL) +[\w.]+: ")


def run_gunicorn(settings, tmp_path, log_format: str, command: list[str] | None = None) -> tuple[list[str], dict]:
    """Start gunicorn with the Procfile's settings (or `command`), make three requests, stop it; its
    stderr lines."""
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "SECRET_KEY": TEST_SECRET,
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "WEB_CONCURRENCY": "1",
        "SEARCHJOBS_LOG_FORMAT": log_format,
    }
    stderr_path = tmp_path / f"gunicorn-{log_format}.log"
    with open(stderr_path, "wb") as stderr:
        command = [part.replace("{port}", str(port)) for part in command] if command else [
            sys.executable, "-m", "gunicorn", "--config", "python:searchjobs.web.gunicorn_conf"]
        proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
    base = f"http://127.0.0.1:{port}"
    try:
        def serving():
            try:
                return requests.get(f"{base}/healthz", timeout=1).status_code == 200
            except requests.ConnectionError:
                return False

        wait_for(serving, 30, "gunicorn")
        submitted = requests.post(f"{base}/api/search-jobs", timeout=10, headers={"X-API-Key": "sj_not_a_real_key"},
                                  files={"image": ("photo.png", demo_image_bytes(1, "dress"), "image/png")},
                                  data={"categories": "dress"})
        answer = submitted.json()
        token = answer["result_url"].rsplit("/r/", 1)[1]
        requests.get(f"{base}/r/{token}?from=sms", timeout=10)
        # a link built with a doubled slash still works (Werkzeug redirects it): its token is masked too
        for doubled in (f"/r//{token}", f"/api//results/{token}", f"/api/results//{token}/events"):
            assert requests.get(base + doubled, timeout=10, allow_redirects=False).status_code == 308
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    lines = [line for line in stderr_path.read_text().splitlines() if line.strip()]
    return lines, {"answer": answer, "token": token, "status": submitted.status_code}


def test_gunicorn_app_and_access_lines_are_json_with_fields_and_no_secret(servers, settings, runtime, tmp_path):
    lines, seen = run_gunicorn(settings, tmp_path, "json")
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    token = seen["token"]

    submitted = [r for r in records if r["msg"] == "job submitted"]
    assert len(submitted) == 1 and submitted[0]["job_id"] == seen["answer"]["job_id"]
    assert submitted[0]["logger"] == "searchjobs.service" and submitted[0]["level"] == "info"

    gunicorn_lines = [r["msg"] for r in records if r["logger"] == "gunicorn.error"]
    assert any(m.startswith("Listening at") for m in gunicorn_lines), gunicorn_lines
    assert any(m.startswith("Booting worker") for m in gunicorn_lines), gunicorn_lines

    access = [r for r in records if r["logger"] == "gunicorn.access"]
    post = [r for r in access if r["method"] == "POST" and r["path"] == "/api/search-jobs"]
    assert len(post) == 1 and post[0]["status"] == seen["status"] == 202
    assert isinstance(post[0]["duration_ms"], int) and post[0]["remote_addr"] == "127.0.0.1"
    page = [r for r in access if r["path"].startswith("/r/")]
    assert [r["path"] for r in page] == [f"/r/{token[:4]}\u2026", f"/r//{token[:4]}\u2026"] and page[0]["status"] == 200
    doubled = [r["path"] for r in access if r["status"] == 308]
    assert doubled == [f"/r//{token[:4]}\u2026", f"/api//results/{token[:4]}\u2026",
                       f"/api/results//{token[:4]}\u2026/events"], doubled

    text = "\n".join(lines)
    for secret in (token, token[:12], "sj_not_a_real_key", "from=sms"):
        assert secret not in text, [line for line in lines if secret in line][:3]


def test_gunicorn_lines_are_text_when_asked(servers, settings, runtime, tmp_path):
    lines, seen = run_gunicorn(settings, tmp_path, "text")
    assert lines and all(TEXT_LINE.match(line) for line in lines), [x for x in lines if not TEXT_LINE.match(x)][:3]
    assert any(" searchjobs.service: job submitted " in line and seen["answer"]["job_id"] in line for line in lines)
    assert any(" gunicorn.access: POST /api/search-jobs 202 " in line for line in lines)
    assert seen["token"] not in "\n".join(lines)


def test_searchjobs_log_format_reaches_the_gunicorn_it_starts(servers, settings, runtime, tmp_path):
    """`searchjobs --log-format text web` with SEARCHJOBS_LOG_FORMAT=json: the flag wins, in gunicorn too."""
    lines, seen = run_gunicorn(settings, tmp_path, "json", [sys.executable, "-m", "searchjobs", "--log-format",
                                                            "text", "web", "--host", "127.0.0.1", "--port", "{port}"])
    assert lines and all(TEXT_LINE.match(line) for line in lines), [x for x in lines if not TEXT_LINE.match(x)][:3]
    assert any(" gunicorn.access: POST /api/search-jobs 202 " in line for line in lines)
