"""The `searchjobs worker` process: an RQ SimpleWorker that keeps leases alive.

No fork per job: RQ's default Worker forks a child for every job (~10 ms of
copy-on-write faults each, and a fresh database connection); a long-lived
process keeps its connection pool and imported modules warm. Job timeouts are
still enforced (RQ's SIGALRM death penalty runs in this main thread), and a
crash of the whole process is covered by the lease: the reconciler re-runs the
job when the lease runs out. Image decoding runs in-process behind Pillow's
decompression-bomb guard and pixel limits rather than in a throwaway child.

Redis going away must not end the process. RQ retries its blocking pop while
Redis is down, but any other Redis error in its loop (its bookkeeping around a
job, its heartbeat, registering the worker) makes `work()` quit; `run_worker`
then starts a fresh RQ worker after a short backoff, until told to stop.
"""

from __future__ import annotations

import logging
import signal
import threading
import time

from rq import SimpleWorker

from searchjobs import defaults
from searchjobs.jobs import store as job_queries
from searchjobs.notifications import send  # noqa: F401  imported before the work loop, not per job
from searchjobs.queue import REDIS_UNAVAILABLE, connect
from searchjobs.runtime import Runtime, install

log = logging.getLogger(__name__)

# seconds between two wake-ups of the thread that listens on RQ's command channel (RQ's own is 60): at
# teardown RQ unsubscribes, then redis-py 8 joins that thread, which without a subscription waits out
# the rest of its sleep; an idle worker then took up to a minute to exit on SIGTERM
COMMAND_LISTENER_WAKE = 1.0
# seconds an idle worker's BLPOP waits before RQ's loop goes round again (RQ's own: its worker TTL - 15,
# about 7 minutes). Python runs signal handlers on the main thread only, and only between bytecodes: a
# stop signal that the kernel hands to another thread of the process (the lease keeper, the listener
# above, a native library's pool; it does so when two arrive together, as Ctrl-C on `searchjobs up`
# sends SIGINT and then up sends SIGTERM) does not interrupt the main thread's BLPOP, and the worker
# would go on waiting until a job or the timeout came. A short wait bounds that to about a second.
IDLE_DEQUEUE_TIMEOUT = 1
RESTART_PAUSE_FIRST = 0.5  # seconds before the first restart of a work loop that lost Redis
RESTART_PAUSE_MAX = 5.0  # seconds; cap on that pause, and on RQ's own wait between dequeue retries
STABLE_RUN_SECONDS = 60.0  # a work loop that ran this long before failing restarts with the first pause again


class LeaseKeeper(threading.Thread):
    """Renews the lease of the attempt this process is running, every heartbeat interval.

    If the process dies (SIGKILL, machine gone), renewals stop and the lease
    runs out: that is how the reconciler knows the job lost its worker. A
    renewal that finds the job no longer ours (this process was frozen or cut
    off, and the job went to another attempt) marks the attempt's lease lost:
    it stops at its next step and writes nothing.
    """

    def __init__(self, runtime: Runtime):
        super().__init__(name="lease-keeper", daemon=True)
        self.runtime = runtime
        self.stopped = threading.Event()

    def run(self) -> None:
        settings = self.runtime.settings
        while not self.stopped.wait(settings.heartbeat_interval):
            attempt = self.runtime.current_attempt
            if attempt is None:
                continue
            try:
                with self.runtime.db.connect() as conn:
                    renewed = job_queries.renew_lease(conn, attempt.job_id, attempt.token, settings.lease_seconds)
            except Exception as exc:  # a missed renewal is retried next beat; the lease has slack
                log.warning("lease renewal failed: %s", type(exc).__name__, extra={"job_id": attempt.job_id})
                continue
            if not renewed and self.runtime.current_attempt is attempt:
                # not ours any more, or finished a moment ago (then nothing is left to stop)
                attempt.lease_lost.set()


class SearchWorker(SimpleWorker):
    """SimpleWorker with a grace period: after `shutdown_grace` seconds of a warm shutdown,
    the running job goes back to the queue at its last persisted stage."""

    runtime: Runtime
    stop_signalled: threading.Event  # set by run_worker's own handler while no RQ loop was listening
    # RQ doubles its wait between dequeue retries up to a minute; Redis back means work back within seconds
    max_connection_wait_time = RESTART_PAUSE_MAX
    shutdown_requested = False  # a SIGTERM/SIGINT arrived: do not restart this work loop

    @property
    def dequeue_timeout(self) -> int:
        return IDLE_DEQUEUE_TIMEOUT

    def subscribe(self):
        """Listen on this worker's RQ command channel (stop-job, shutdown), waking every
        COMMAND_LISTENER_WAKE seconds, so that the teardown's join of the listener is bounded by it."""
        self.pubsub = self.connection.pubsub()
        self.pubsub.subscribe(**{self.pubsub_channel_name: self.handle_payload})
        self.pubsub_thread = self.pubsub.run_in_thread(sleep_time=COMMAND_LISTENER_WAKE, daemon=True,
                                                       exception_handler=self._pubsub_exception_handler)

    def _install_signal_handlers(self):
        super()._install_signal_handlers()
        if self.stop_signalled.is_set():
            # the signal came while this loop was being built: stop at the loop's first check
            self.shutdown_requested = self._stop_requested = True

    def request_stop(self, signum, frame):
        self.shutdown_requested = True
        # the running search is known locally: no Redis round trip inside a signal handler
        if self.runtime.current_attempt is not None and not self._stop_requested:
            grace = self.runtime.settings.shutdown_grace
            log.info("warm shutdown: finishing the current job (grace %ss)", grace)
            timer = threading.Timer(grace, self.runtime.release_requested.set)
            timer.daemon = True
            timer.start()
        try:
            super().request_stop(signum, frame)
        except REDIS_UNAVAILABLE as exc:
            # RQ records the request in Redis after setting its stop flag; the stop goes ahead without Redis
            log.warning("warm shutdown not recorded in Redis: %s", type(exc).__name__)


def _new_worker(runtime: Runtime, queues: list[str] | None, name: str, stop: threading.Event) -> SearchWorker:
    # RQ blocks on BLPOP/BZPOPMIN: no short socket timeout on the worker's own connection
    connection = connect(runtime.settings.redis_url, socket_timeout=None)
    worker = SearchWorker(list(queues or defaults.ALL_QUEUES), connection=connection, name=name)
    worker.runtime = runtime
    worker.stop_signalled = stop
    runtime.worker_name = worker.name
    return worker


def _discard(worker: SearchWorker) -> None:
    """Let go of a worker whose loop ended on a Redis error (its teardown may not have run)."""
    thread = getattr(worker, "pubsub_thread", None)
    if thread is not None:
        thread.stop()  # no I/O: the thread ends at its next wake-up (within COMMAND_LISTENER_WAKE)
    worker.connection.close()


def _listen_for_stop(stop: threading.Event) -> None:
    """Between two RQ loops, SIGTERM/SIGINT only set `stop` (the old loop's handlers would raise into us)."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())


def run_worker(runtime: Runtime, queues: list[str] | None = None, *, burst: bool = False,
               max_jobs: int | None = None, logging_level: str = "INFO") -> bool:
    """Run the work loop; a long-running worker (not burst, no max_jobs) outlives Redis outages."""
    install(runtime)
    base_name = runtime.worker_name
    keeper = LeaseKeeper(runtime)
    keeper.start()
    worked, restarts, failures = False, 0, 0
    stop = threading.Event()
    try:
        while True:
            started, worker, error = time.monotonic(), None, None
            try:
                # a fresh name per restart: RQ refuses to register a name whose hash says it is still alive;
                # the constructor already talks to Redis (CLIENT SETNAME)
                name = base_name if restarts == 0 else f"{base_name}.{restarts}"
                worker = _new_worker(runtime, queues, name, stop)
                worked = worker.work(burst=burst, max_jobs=max_jobs, logging_level=logging_level,
                                     with_scheduler=False) or worked
            except REDIS_UNAVAILABLE as exc:
                error = exc
            stopping = stop.is_set() or (worker is not None and worker.shutdown_requested)
            if burst or max_jobs is not None or stopping:
                if error is not None and not stopping:
                    raise error
                return worked
            # RQ's loop quit on its own: Redis went away outside the dequeue it retries
            _listen_for_stop(stop)
            if worker is not None:
                _discard(worker)
            failures = 1 if time.monotonic() - started > STABLE_RUN_SECONDS else failures + 1
            pause = min(RESTART_PAUSE_MAX, RESTART_PAUSE_FIRST * 2 ** (failures - 1))
            log.warning("work loop ended (%s); starting a new one in %.1fs",
                        type(error).__name__ if error else "RQ quit", pause)
            if stop.wait(pause):
                return worked
            restarts += 1
    finally:
        keeper.stopped.set()
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
