"""The Procfile as a Procfile runner runs it: honcho starts web, worker and scheduler against the
session's Postgres and Redis, a job submitted over HTTP completes, and SIGTERM to honcho stops
every process (gunicorn's workers included) within honcho's kill window, without a SIGKILL.
The release step runs through `honcho run`.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from searchjobs.embedded import free_port
from tests.conftest import TEST_SECRET, demo_image_bytes, wait_for

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
HONCHO = str(Path(sys.executable).parent / "honcho")
STOP_SECONDS = 15  # honcho SIGKILLs what is still running 5 s after its SIGTERM; this is only a backstop


def procfile_command(process_type: str) -> str:
    for line in (ROOT / "Procfile").read_text().splitlines():
        name, _, command = line.partition(":")
        if name.strip() == process_type:
            return command.strip()
    raise LookupError(process_type)


def live_members(pgid: int) -> list[str]:
    """Processes of a process group that are still running (zombies awaiting their reaper are not)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # exited while we looked
            continue
        # "pid (comm) state ppid pgrp ...": comm may hold spaces, so split after its closing parenthesis
        head, _, rest = text.rpartition(")")
        fields = rest.split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(head)
    return members


@pytest.fixture
def procfile_env(runtime, settings, tmp_path):
    port = free_port()
    env_file = tmp_path / "empty.env"  # so a developer's .env in the checkout cannot change the test
    env_file.write_text("")
    env = {
        **os.environ,
        # the Procfile names bare commands (searchjobs, gunicorn): the environment's bin folder comes first
        "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""),
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "SECRET_KEY": TEST_SECRET,
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        "PORT": str(port),  # honcho gives the first process type this port (web), the next ones +100
        "HOST": "127.0.0.1",
        "WEB_CONCURRENCY": "1",
        "SEARCHJOBS_LOG_FORMAT": "json",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),  # shared: /metrics shows the worker's counters
    }
    (tmp_path / "metrics").mkdir()
    return env, port, str(env_file)


def test_release_runs_through_honcho_run(procfile_env):
    env, _, env_file = procfile_env
    command = procfile_command("release")
    result = subprocess.run([HONCHO, "-f", str(ROOT / "Procfile"), "-e", env_file, "run", *command.split()],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "database at" in result.stdout


def test_honcho_runs_the_procfile_and_stops_everything_on_sigterm(procfile_env, runtime, tmp_path):
    env, port, env_file = procfile_env
    log_path = tmp_path / "honcho.log"
    with open(log_path, "wb") as log:
        honcho = subprocess.Popen(
            [HONCHO, "-f", str(ROOT / "Procfile"), "-e", env_file, "--no-colour", "start", "web", "worker",
             "scheduler"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        def healthy():
            assert honcho.poll() is None, log_path.read_text()
            try:
                return requests.get(f"{base}/healthz", timeout=1).status_code == 200
            except requests.ConnectionError:
                return False

        wait_for(healthy, 20, "the web process")
        response = requests.post(
            f"{base}/api/search-jobs",
            files={"image": ("photo.png", demo_image_bytes(1, "dress"), "image/png")},
            data={"categories": "dress"}, timeout=10,
        )
        assert response.status_code == 202, response.text
        job_id = response.json()["job_id"]

        def finished():
            body = requests.get(f"{base}/api/search-jobs/{job_id}", timeout=5).json()
            return body["status"] in ("completed", "failed") and body

        assert wait_for(finished, 20, "the job to finish", interval=0.2)["status"] == "completed"
        # the worker's counter, read through the web's /metrics (one PROMETHEUS_MULTIPROC_DIR)
        scrape = requests.get(f"{base}/metrics", timeout=5).text
        assert "searchjobs_jobs_completed_total 1.0" in scrape, scrape[:2000]
        assert "searchjobs_redis_up 1.0" in scrape and "searchjobs_postgres_up 1.0" in scrape

        output = log_path.read_text()
        pids = {name: int(pid) for name, pid in re.findall(r"(\w+)\.1 started \(pid=(\d+)\)", output)}
        assert set(pids) == {"web", "worker", "scheduler"}, output

        honcho.send_signal(signal.SIGTERM)
        honcho.wait(STOP_SECONDS)
    finally:
        if honcho.poll() is None:
            os.killpg(honcho.pid, signal.SIGKILL)
            honcho.wait()

    output = log_path.read_text()
    assert "SIGKILL" not in output, output[-3000:]  # every process stopped on its own after SIGTERM
    stopped = dict(re.findall(r"(\w+)\.1 stopped \(rc=(-?\d+)\)", output))
    assert set(stopped) == {"web", "worker", "scheduler"}, output[-3000:]
    for name, pid in pids.items():
        # honcho starts each process type in its own process group: gunicorn's workers are in the web's
        assert live_members(pid) == [], f"{name}: still running after honcho exited"
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{base}/healthz", timeout=1)
    from rq import Worker

    assert Worker.all(connection=runtime.redis) == []  # the RQ worker unregistered itself


def readme_honcho_line() -> str:
    """The honcho command of the README's Process types section, exactly as written there."""
    lines = [line.strip() for line in (ROOT / "README.md").read_text().splitlines()
             if line.strip().startswith("searchjobs release && honcho start")]
    assert len(lines) == 1, lines
    return lines[0]


def test_the_readmes_honcho_line_runs_next_to_a_running_up(servers, runtime, tmp_path):
    """No URL and no SECRET_KEY in the environment: every process type finds them in the data folder of
    the running instance (the session's embedded servers hold its lock and state file, as `up` does)."""
    stack = servers[2]
    if stack is None:
        pytest.skip("the servers are external: no embedded instance to find")
    (stack.data_dir / "secret_key").write_text("readme-honcho-test-secret-key-0123456789")
    port = free_port()
    stack.lock.describe(web_url=f"http://127.0.0.1:{port}")  # as `up` records its web's URL
    env = {key: value for key, value in os.environ.items()
           if key not in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "PUBLIC_BASE_URL")}
    env.update({
        "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""),
        "SEARCHJOBS_DATA_DIR": str(stack.data_dir),
        "PORT": str(port), "HOST": "127.0.0.1", "WEB_CONCURRENCY": "1", "SEARCHJOBS_LOG_FORMAT": "json",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
    })
    (tmp_path / "metrics").mkdir()
    log_path = tmp_path / "honcho.log"
    with open(log_path, "wb") as log:
        shell = subprocess.Popen(["bash", "-c", readme_honcho_line()], cwd=ROOT, env=env, stdout=log,
                                 stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        def healthy():
            assert shell.poll() is None, log_path.read_text()[-3000:]
            try:
                return requests.get(f"{base}/readyz", timeout=1).status_code == 200
            except requests.ConnectionError:
                return False

        wait_for(healthy, 30, "the web process")
        submitted = requests.post(f"{base}/api/search-jobs", data={"categories": "dress"}, timeout=10,
                                  files={"image": ("photo.png", demo_image_bytes(1, "dress"), "image/png")})
        assert submitted.status_code == 202, submitted.text
        job_id = submitted.json()["job_id"]

        def finished():
            body = requests.get(f"{base}/api/search-jobs/{job_id}", timeout=5).json()
            return body["status"] in ("completed", "failed") and body

        assert wait_for(finished, 30, "the job to finish", interval=0.2)["status"] == "completed"
        output = log_path.read_text()
        started = set(re.findall(r"(\w+)\.\d+ started \(pid=\d+\)", output))
        assert started == {"web", "worker", "scheduler"}, output[-3000:]
        assert len(re.findall(r"worker\.\d+ started", output)) == 2
        # the result link is on the instance's web URL and signed with its key: the page opens
        assert submitted.json()["result_url"].startswith(f"{base}/r/")
        assert requests.get(submitted.json()["result_url"], timeout=5).status_code == 200
    finally:
        os.killpg(shell.pid, signal.SIGTERM)
        try:
            shell.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(shell.pid, signal.SIGKILL)
            shell.wait()
        (stack.data_dir / "secret_key").unlink(missing_ok=True)
        stack.lock.describe()
