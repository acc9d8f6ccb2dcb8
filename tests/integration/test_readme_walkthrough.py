"""The README's quick start, walked as a new user walks it: a fresh copy of the checkout, a fresh venv,
the README's own run command, then the traps a newcomer falls into.

- install with the README's run command (a plain `pip install -e .`: no test tools);
- `searchjobs up`; a second `up` on the same folder is refused, the first keeps serving;
- `up` on a busy port is refused before anything starts;
- `eval "$(searchjobs env)"`, then `rq info` with its URL, as the README's RQ section shows;
- a job is submitted and completes; Ctrl-C; `up` again, and the job is still there.

The one change from the README: `up` gets `--port` of a free port, so the test never meets another
program on 8000.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from searchjobs.embedded import free_port
from tests.conftest import demo_image_bytes, server_folder

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
INSTALL_TIMEOUT = 600  # seconds for pip (wheels come from the local cache when they are there)
UP_TIMEOUT = 180  # seconds for a first `up`: initdb, migrations, the 3,000-item demo catalog


def readme_run_command() -> tuple[str, str]:
    """(install, start) of the quick start's run line, e.g. ("pip install -e .", "searchjobs up")."""
    text = (ROOT / "README.md").read_text()
    block = text[text.index("## Quick start"):]
    block = block[block.index("```sh") + 5:block.index("```", block.index("```sh") + 5)]
    [line] = [line for line in block.splitlines() if "searchjobs up" in line]
    command = line.split("#", 1)[0].strip()
    install, start = (part.strip() for part in command.split("&&"))
    return install, start


def fresh_copy(target: Path) -> None:
    """The checkout as a clone would have it, with this session's uncommitted work (tracked or new)."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


@pytest.fixture(scope="module")
def checkout():
    with server_folder("readme") as folder:
        clone = folder / "searchjobs"
        clone.mkdir()
        fresh_copy(clone)
        subprocess.run([sys.executable, "-m", "venv", str(clone / ".venv")], check=True, timeout=120)
        yield clone


def shell(checkout: Path, command: str, timeout: float = 120, **env) -> subprocess.CompletedProcess:
    """`command` in bash inside the fresh venv, in the checkout, as a user's terminal would run it."""
    return subprocess.run(["bash", "-c", command], cwd=checkout, env=user_env(checkout, **env),
                          capture_output=True, text=True, timeout=timeout)


def user_env(checkout: Path, **extra) -> dict:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("SEARCHJOBS_", "DATABASE_URL", "REDIS_URL", "SECRET_KEY", "PYTHON",
                                  "VIRTUAL_ENV", "PROMETHEUS_"))}
    env["PATH"] = f"{checkout / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(checkout / ".venv")
    return {**env, **extra}


class Up:
    """`searchjobs up` in the background, as a terminal runs it until Ctrl-C."""

    def __init__(self, checkout: Path, start: str, port: int, log_name: str):
        self.base = f"http://127.0.0.1:{port}"
        self.log_path = checkout / log_name
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(["bash", "-c", f"exec {start} --port {port}"], cwd=checkout,
                                         env=user_env(checkout), stdout=log, stderr=subprocess.STDOUT)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = UP_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.output()[-3000:]
            if "searchjobs is running at" in self.output():
                assert requests.get(f"{self.base}/readyz", timeout=2).status_code == 200
                return
            time.sleep(0.5)
        raise AssertionError("up did not start:\n" + self.output()[-3000:])

    def ctrl_c(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(90)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("up did not stop on Ctrl-C:\n" + self.output()[-3000:]) from None


def test_the_quick_start_and_its_traps_as_a_new_user_meets_them(checkout):
    install, start = readme_run_command()
    assert install == "pip install -e ." and start == "searchjobs up"
    installed = shell(checkout, install, timeout=INSTALL_TIMEOUT)
    assert installed.returncode == 0, installed.stdout[-2000:] + installed.stderr[-2000:]
    assert shell(checkout, "python -c 'import pytest'").returncode != 0  # the run command needs no test tools

    first = Up(checkout, start, free_port(), "up-1.log")
    try:
        first.wait_ready()
        assert f"running at {first.base}" in first.output()

        # a second `up` on the same data folder: refused at once, naming the first; the first unharmed
        second = shell(checkout, f"{start} --port {free_port()}", timeout=60)
        assert second.returncode == 1, second.stdout + second.stderr
        assert f"pid {first.proc.pid}" in second.stderr and first.base in second.stderr, second.stderr
        assert requests.get(f"{first.base}/readyz", timeout=2).status_code == 200

        # a busy port: refused before anything starts
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            busy = taken.getsockname()[1]
            # (another folder: on this one, `up` says first that an instance already runs here)
            refused = shell(checkout, f"{start} --port {busy}", timeout=60,
                            SEARCHJOBS_DATA_DIR=str(checkout / "other-data"))
        assert refused.returncode == 1 and re.search(rf"port {busy} is in use; try --port \d+", refused.stderr)
        assert "running at" not in refused.stdout

        # the README's RQ tools, through `searchjobs env`
        # (the workers start once the catalog is loaded, so /readyz can be 200 a moment before they register)
        deadline = time.monotonic() + 60
        while True:
            rq_info = shell(checkout, 'eval "$(searchjobs env)" && rq info --url "$REDIS_URL"', timeout=60)
            assert rq_info.returncode == 0, rq_info.stderr
            if "searches" in rq_info.stdout and not re.search(r"\b0 workers", rq_info.stdout):
                break
            assert time.monotonic() < deadline, rq_info.stdout
            time.sleep(1)

        # a job, start to finish
        submitted = requests.post(f"{first.base}/api/search-jobs", data={"categories": "dress"}, timeout=10,
                                  files={"image": ("photo.png", demo_image_bytes(3, "dress"), "image/png")})
        assert submitted.status_code == 202, submitted.text
        job_id = submitted.json()["job_id"]
        deadline = time.monotonic() + 60
        while requests.get(f"{first.base}/api/search-jobs/{job_id}", timeout=5).json()["status"] != "completed":
            assert time.monotonic() < deadline, "the job did not complete"
            time.sleep(0.3)
    finally:
        code = first.ctrl_c()
    assert code == 0, first.output()[-3000:]

    # again: the data is kept, the job is still there, its result link still opens
    again = Up(checkout, start, free_port(), "up-2.log")
    try:
        again.wait_ready()
        assert "Loading the demo catalog" not in again.output()
        body = requests.get(f"{again.base}/api/search-jobs/{job_id}", timeout=5).json()
        assert body["status"] == "completed"
        result_path = "/r/" + submitted.json()["result_url"].split("/r/", 1)[1]
        assert requests.get(f"{again.base}{result_path}", timeout=5).status_code == 200
    finally:
        assert again.ctrl_c() == 0, again.output()[-3000:]
