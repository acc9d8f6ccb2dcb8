"""schemathesis's own CLI against the real web process: every phase (examples, coverage, fuzzing and the
stateful phase that follows the document's links from a submit to the job's operations), every check.

The web runs as in production (`searchjobs web`, gunicorn) on the session's Postgres and Valkey, and `st run`
reads /openapi.json from it with an admin key. Exit 0 means no schema-valid request was refused, no invalid
one accepted, no 5xx, and every answer matched the document.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from searchjobs import clients
from searchjobs.embedded import free_port
from tests.conftest import TEST_SECRET, wait_for

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
MAX_EXAMPLES = int(os.environ.get("ST_MAX_EXAMPLES", "15"))  # per operation and phase: about a minute here
SEED = int(os.environ.get("ST_SEED", "15"))  # one reproducible run; ST_SEED=... explores further


@pytest.fixture
def web_process(servers, runtime, tmp_path):
    """`searchjobs web` (one gunicorn process) on a free port; yields its base URL."""
    database_url, redis_url, _ = servers
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "SECRET_KEY": TEST_SECRET,
        "PUBLIC_BASE_URL": base,
        "WEB_CONCURRENCY": "1",
        "SEARCHJOBS_RATE_LIMITS": "off",
        "SEARCHJOBS_STREAM_MAX_SECONDS": "1",  # a stream of a job no worker runs ends quickly
        "SEARCHJOBS_SSE_HEARTBEAT": "0.5",
        "PYTHONPATH": str(ROOT),
    }
    log = open(tmp_path / "web.log", "wb")  # noqa: SIM115 - closed below, after the process
    proc = subprocess.Popen([sys.executable, "-m", "searchjobs", "web", "--port", str(port)], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT)

    def ready():
        try:
            return requests.get(base + "/readyz", timeout=2).status_code == 200
        except requests.RequestException:
            return proc.poll() is not None  # stop waiting on a crash; the assert below says so

    try:
        wait_for(ready, 30, "the web process to serve")
        assert proc.poll() is None, (tmp_path / "web.log").read_text()
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_schemathesis_cli_finds_nothing(web_process, runtime, tmp_path):
    st = shutil.which("st", path=str(Path(sys.executable).parent)) or shutil.which("st")
    assert st, "schemathesis's `st` command is installed with the test extras"
    with runtime.engine.begin() as conn:
        _, admin_key = clients.create(conn, "schemathesis-cli", is_admin=True)
    command = [
        st, "run", f"{web_process}/openapi.json",
        "--checks", "all",
        "--phases", "examples,coverage,fuzzing,stateful",
        "--header", f"Authorization: Bearer {admin_key}",
        "--max-examples", str(MAX_EXAMPLES),
        "--seed", str(SEED),
        "--workers", "1",
        "--request-timeout", "10",
        "--generation-database", "none",
        "--no-color",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SCHEMATHESIS_HOOKS": "tests.integration.schemathesis_hooks"}
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-20000:] + done.stderr[-3000:]
    print("\n".join(line for line in done.stdout.splitlines() if "API Links" in line or "generated" in line))
