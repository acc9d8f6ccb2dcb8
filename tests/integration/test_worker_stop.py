"""The worker process lets go promptly when told to stop (a deploy's SIGTERM, then SIGKILL after a grace)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from searchjobs.worker import worker as worker_module
from tests.conftest import TEST_SECRET, wait_for

ROOT = Path(__file__).resolve().parents[2]


def test_a_stopping_worker_lets_go_of_its_command_listener_within_a_wake_up(runtime):
    # RQ's teardown unsubscribes from the worker's command channel, then redis-py 8 joins the listener
    # thread; a listener that saw its subscription end first waits out the rest of its sleep (RQ's: 60 s,
    # an idle worker took up to a minute to exit on SIGTERM). Here that race is made certain.
    worker = worker_module._new_worker(runtime, None, "stop-test", threading.Event())
    try:
        worker.subscribe()
        worker.pubsub.unsubscribe()
        deadline = time.monotonic() + 5
        while worker.pubsub.subscribed and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not worker.pubsub.subscribed
        time.sleep(0.2)  # the listener is now waiting for a subscription
        started = time.monotonic()
        worker.unsubscribe()  # what RQ's teardown does
        assert time.monotonic() - started < 2.5  # RQ's own listener: up to 60 s
        assert not worker.pubsub_thread.is_alive()
    finally:
        worker.connection.close()


@pytest.mark.slow
def test_an_idle_worker_stops_on_ctrl_c_then_sigterm(settings, runtime, tmp_path):
    """Ctrl-C on `searchjobs up` sends SIGINT to every process of its group, then up sends each one SIGTERM.
    Two signals together are often handed by the kernel to a thread other than the main one, where
    Python only notes them: a worker blocked in RQ's 7-minute BLPOP then stayed until up killed it (6 of 8
    tries). Its BLPOP now wakes every IDLE_DEQUEUE_TIMEOUT, so the main thread runs the handler."""
    env = {**os.environ, "DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url,
           "SECRET_KEY": TEST_SECRET, "SEARCHJOBS_LOG_FORMAT": "json"}
    for attempt in range(4):  # the race is likely, not certain: each try gives it another chance
        log_path = tmp_path / f"worker-{attempt}.log"
        with open(log_path, "wb") as log_file:
            worker = subprocess.Popen([sys.executable, "-m", "searchjobs", "worker"], env=env, cwd=ROOT,
                                      stdout=log_file, stderr=subprocess.STDOUT)
            try:
                wait_for(lambda w=worker, log=log_path: w.poll() is not None or "Listening on" in log.read_text(),
                         30, "the worker to wait for jobs")
                assert worker.poll() is None, log_path.read_text()
                time.sleep(0.3)  # inside the BLPOP now
                worker.send_signal(signal.SIGINT)
                worker.send_signal(signal.SIGTERM)
                worker.wait(10)  # before: up to RQ's dequeue timeout, about 7 minutes
            finally:
                if worker.poll() is None:
                    worker.kill()
                    worker.wait()
        assert worker.returncode == 0, log_path.read_text()[-2000:]
