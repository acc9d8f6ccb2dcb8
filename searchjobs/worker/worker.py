"""The `searchjobs worker` process: an RQ SimpleWorker that keeps leases alive.

No fork per job: RQ's default Worker forks a child for every job (~10 ms of
copy-on-write faults each, and a fresh database connection); a long-lived
process keeps its connection pool and imported modules warm. Job timeouts are
still enforced (RQ's SIGALRM death penalty runs in this main thread), and a
crash of the whole process is covered by the lease: the reconciler re-runs the
job when the lease runs out. Image decoding runs in-process behind Pillow's
decompression-bomb guard and pixel limits rather than in a throwaway child.
"""

from __future__ import annotations

import logging
import signal
import threading

from rq import SimpleWorker

from searchjobs import defaults
from searchjobs.jobs import notify, search  # noqa: F401  imported before the work loop, not per job
from searchjobs.jobs.runtime import Runtime, install
from searchjobs.models import jobs as job_queries
from searchjobs.queue import connect

log = logging.getLogger(__name__)


class LeaseKeeper(threading.Thread):
    """Renews the lease of the attempt this process is running, every heartbeat interval.

    If the process dies (SIGKILL, machine gone), renewals stop and the lease
    runs out: that is how the reconciler knows the job lost its worker.
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
                    job_queries.renew_lease(conn, attempt.job_id, self.runtime.worker_name, attempt.attempt,
                                            settings.lease_seconds)
            except Exception as exc:  # a missed renewal is retried next beat; the lease has slack
                log.warning("lease renewal failed: %s", type(exc).__name__, extra={"job_id": attempt.job_id})


class SearchWorker(SimpleWorker):
    """SimpleWorker with a grace period: after `shutdown_grace` seconds of a warm shutdown,
    the running job goes back to the queue at its last persisted stage."""

    runtime: Runtime

    def request_stop(self, signum, frame):
        if self.get_current_job_id() and not self._stop_requested:
            grace = self.runtime.settings.shutdown_grace
            log.info("warm shutdown: finishing the current job (grace %ss)", grace)
            timer = threading.Timer(grace, self.runtime.release_requested.set)
            timer.daemon = True
            timer.start()
        super().request_stop(signum, frame)


def run_worker(runtime: Runtime, queues: list[str] | None = None, *, burst: bool = False,
               max_jobs: int | None = None, logging_level: str = "INFO") -> bool:
    install(runtime)
    redis_url = runtime.settings.redis_url
    # RQ blocks on BLPOP/BZPOPMIN: no short socket timeout on the worker's own connection
    connection = connect(redis_url, socket_timeout=None)
    worker = SearchWorker(list(queues or defaults.ALL_QUEUES), connection=connection,
                          name=runtime.worker_name)
    worker.runtime = runtime
    runtime.worker_name = worker.name
    keeper = LeaseKeeper(runtime)
    keeper.start()
    try:
        return worker.work(burst=burst, max_jobs=max_jobs, logging_level=logging_level, with_scheduler=False)
    finally:
        keeper.stopped.set()
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
