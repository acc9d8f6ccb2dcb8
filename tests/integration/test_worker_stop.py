"""The worker process lets go promptly when told to stop (a deploy's SIGTERM, then SIGKILL after a grace)."""

from __future__ import annotations

import threading
import time

from searchjobs.worker import worker as worker_module


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
