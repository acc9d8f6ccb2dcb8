"""`searchjobs up` as a person runs it: embedded servers by default, external ones with the two URLs."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import requests

from searchjobs.embedded import free_port
from tests.conftest import demo_image_bytes, server_folder

pytestmark = pytest.mark.slow


@pytest.fixture
def tmp_path():
    """`up`'s folder: one its PostgreSQL's own user can reach when we run as root (see server_folder)."""
    with server_folder("up") as folder:
        yield folder


def up_env(tmp_path, env_extra: dict | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY")}
    env.update({"SEARCHJOBS_DATA_DIR": str(tmp_path / "data"), "SEARCHJOBS_LOG_FORMAT": "json", **(env_extra or {})})
    return env


def run_up(tmp_path, env_extra: dict, *args: str, port: int | None = None, log_name: str = "up.log"):
    port = port or free_port()
    env = up_env(tmp_path, env_extra)
    log = open(tmp_path / log_name, "wb")  # noqa: SIM115 - closed by the caller's `finish`
    proc = subprocess.Popen([sys.executable, "-m", "searchjobs", "up", "--port", str(port), "--workers", "1", *args],
                            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    base = f"http://127.0.0.1:{port}"
    proc.log_file = log  # for a test that kills `up` instead of finishing it

    def finish() -> str:
        children = psutil.Process(proc.pid).children(recursive=True)
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        try:
            proc.wait(60)
        finally:
            log.close()
        gone, alive = psutil.wait_procs([c for c in children if c.is_running()], timeout=10)
        output = (tmp_path / log_name).read_text(errors="replace")
        assert proc.returncode == 0, output[-3000:]
        data = tmp_path / "data"
        assert not (data / "postgres" / "postmaster.pid").exists(), "the embedded PostgreSQL is still running"
        assert not (data / "valkey" / "valkey.pid").exists(), "the embedded Valkey is still running"
        assert not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE], "up left processes behind"
        return output

    return proc, base, finish


def wait_ready(proc, base: str, timeout: float, tmp_path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, (tmp_path / "up.log").read_text(errors="replace")[-3000:]
        try:
            if requests.get(f"{base}/readyz", timeout=1).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.25)
    raise AssertionError("searchjobs up did not become ready")


def complete_one_job(base: str, category: str) -> dict:
    response = requests.post(f"{base}/api/search-jobs", timeout=10,
                             files={"image": ("p.png", demo_image_bytes(0, category), "image/png")},
                             data={"categories": category})
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        body = requests.get(f"{base}/api/search-jobs/{job_id}", timeout=5).json()
        if body["status"] in ("completed", "failed"):
            return body
        time.sleep(0.2)
    raise AssertionError("the job did not finish")


def test_up_on_the_embedded_default_then_again_reusing_the_data(tmp_path):
    proc, base, finish = run_up(tmp_path, {}, "--demo-size", "40")
    wait_ready(proc, base, 120, tmp_path)
    assert complete_one_job(base, "dress")["status"] == "completed"
    output = finish()
    assert "searchjobs is running at" in output and str(tmp_path / "data") in output
    assert "Demo catalog" in output

    proc, base, finish = run_up(tmp_path, {}, "--demo-size", "40")  # same data dir: reused, no reload
    wait_ready(proc, base, 120, tmp_path)
    categories = requests.get(f"{base}/api/categories", timeout=5).json()["categories"]
    assert sum(c["items"] for c in categories) == 40
    output = finish()
    assert "Loading the demo catalog" not in output


def test_up_with_external_servers_starts_nothing_embedded(tmp_path, settings, runtime):
    proc, base, finish = run_up(tmp_path, {"DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url})
    wait_ready(proc, base, 60, tmp_path)
    body = complete_one_job(base, "shoes")
    assert body["status"] == "completed" and body["progress"] == 100
    output = finish()
    assert "Starting embedded" not in output and not (tmp_path / "data" / "postgres").exists()


def searchjobs(tmp_path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "searchjobs", *args], env=up_env(tmp_path), cwd=tmp_path,
                          capture_output=True, text=True, timeout=timeout)


def test_a_second_up_on_the_same_data_folder_is_refused_and_the_first_is_unharmed(tmp_path):
    proc, base, finish = run_up(tmp_path, {}, "--demo-size", "20")
    wait_ready(proc, base, 120, tmp_path)
    state = (tmp_path / "data" / "servers.json").read_text()

    second = searchjobs(tmp_path, "up", "--port", str(free_port()), "--demo-size", "0")
    assert second.returncode == 1, second.stdout + second.stderr
    assert f"pid {proc.pid}" in second.stderr and base in second.stderr, second.stderr
    assert "Starting embedded" not in second.stdout and "running at" not in second.stdout

    # the first instance: still serving, its state file untouched, and it stops cleanly (finish checks)
    assert complete_one_job(base, "dress")["status"] == "completed"
    assert (tmp_path / "data" / "servers.json").read_text() == state
    finish()


def test_up_on_a_busy_port_is_refused_before_anything_starts(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        refused = searchjobs(tmp_path, "up", "--port", str(port))
    assert refused.returncode == 1
    assert re.search(rf"port {port} is in use; try --port \d+", refused.stderr), refused.stderr
    assert "running at" not in refused.stdout and not (tmp_path / "data" / "postgres").exists()


def test_env_gives_a_shell_the_running_instance_and_rq_info_reads_it(tmp_path):
    missing = searchjobs(tmp_path, "env")
    assert missing.returncode == 1 and "no `searchjobs up`" in missing.stderr

    proc, base, finish = run_up(tmp_path, {}, "--demo-size", "0")
    wait_ready(proc, base, 120, tmp_path)
    try:
        printed = searchjobs(tmp_path, "env")
        assert printed.returncode == 0, printed.stderr
        assert [line.split("=", 1)[0] for line in printed.stdout.splitlines()] == [
            "export DATABASE_URL", "export REDIS_URL"]
        # as the README has it, in a real shell
        rq_info = Path(sys.executable).parent / "rq"
        shell = subprocess.run(["bash", "-c", f'eval "$({sys.executable} -m searchjobs env)" && '
                                              f'{rq_info} info --url "$REDIS_URL" && echo "db=$DATABASE_URL"'],
                               env=up_env(tmp_path), cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert shell.returncode == 0, shell.stderr
        assert "searches" in shell.stdout and "worker" in shell.stdout
        assert "db=postgresql://postgres:" in shell.stdout
    finally:
        finish()


def test_up_reembeds_a_catalog_left_by_an_earlier_descriptor_and_its_jobs_run(tmp_path):
    """A data folder of an earlier release: its vectors come from a descriptor version this release does
    not compute. Workers would refuse to compare with them; `up` reembeds while the web serves."""
    import sqlalchemy as sa

    from searchjobs.catalog import descriptor
    from searchjobs.embedded import EmbeddedStack

    proc, base, finish = run_up(tmp_path, {}, "--demo-size", "40")
    wait_ready(proc, base, 120, tmp_path)
    finish()
    stack = EmbeddedStack(tmp_path / "data", persist_redis=False).start()
    try:
        engine = sa.create_engine(stack.postgres.url.replace("postgresql://", "postgresql+psycopg2://"))
        with engine.begin() as conn:  # what the release before left: the same vectors, another name
            conn.execute(sa.text("INSERT INTO catalog_embedders (name, dimension, spec) "
                                 "SELECT 'hsvgrid-v0', dimension, spec FROM catalog_embedders WHERE name = :n"),
                         {"n": descriptor.DESCRIPTOR_VERSION})
            conn.execute(sa.text("UPDATE catalog_embeddings SET embedder = 'hsvgrid-v0'"))
            conn.execute(sa.text("UPDATE catalog_state SET active_embedder = 'hsvgrid-v0'"))
        engine.dispose()
    finally:
        stack.stop()

    proc, base, finish = run_up(tmp_path, {}, "--demo-size", "40", log_name="up-2.log")
    wait_ready(proc, base, 120, tmp_path)
    assert complete_one_job(base, "dress")["status"] == "completed"
    output = finish()
    assert "come from hsvgrid-v0" in output and "reembedding" in output


def test_kill_9_of_up_takes_its_processes_with_it_and_the_next_up_serves(tmp_path):
    proc, base, finish = run_up(tmp_path, {}, "--demo-size", "20")
    wait_ready(proc, base, 120, tmp_path)
    children = [c for c in psutil.Process(proc.pid).children() if "searchjobs" in " ".join(c.cmdline())]
    assert len(children) == 3  # web (gunicorn, its workers below it), 1 worker, the scheduler
    proc.kill()
    proc.wait()
    proc.log_file.close()
    gone, alive = psutil.wait_procs(children, timeout=40)
    assert not alive, [c.cmdline() for c in alive]

    proc, base, finish = run_up(tmp_path, {}, "--demo-size", "20", log_name="up-after-kill.log")
    wait_ready(proc, base, 120, tmp_path)
    assert complete_one_job(base, "dress")["status"] == "completed"
    finish()
