"""The `searchjobs scheduler` process: a reconciler pass every few seconds (worker/reconciler.py) and
the retention cleanup hourly (worker/cleanup.py). Several may run: lock rows let one pass of each run
at a time.
"""

from __future__ import annotations

import logging
import threading
import time

from searchjobs import defaults
from searchjobs.db.engine import is_outage
from searchjobs.queue import REDIS_UNAVAILABLE
from searchjobs.runtime import Runtime
from searchjobs.worker.cleanup import cleanup
from searchjobs.worker.reconciler import ReconcilerState, reconcile

log = logging.getLogger(__name__)


def run_scheduler(runtime: Runtime, stop: threading.Event, *, once: bool = False) -> None:
    """Reconcile every few seconds and clean up hourly until `stop` is set."""
    next_cleanup = time.monotonic()
    expire_after = 0.0  # monotonic time before which leases are not expired (set after a database outage)
    state = ReconcilerState()  # this process's: its first pass sweeps every pending job, later ones a bounded set
    while not stop.is_set():
        try:
            reconcile(runtime, expire=time.monotonic() >= expire_after, state=state, stop=stop)
            if time.monotonic() >= next_cleanup and not stop.is_set():
                cleanup(runtime, stop=stop)
                next_cleanup = time.monotonic() + defaults.CLEANUP_INTERVAL
        except REDIS_UNAVAILABLE as exc:
            log.warning("reconciler: Redis unavailable (%s); next pass in %ss", type(exc).__name__,
                        runtime.settings.reconcile_interval)
        except Exception as exc:
            if is_outage(exc):
                log.warning("reconciler: database unavailable; next pass in %ss",
                            runtime.settings.reconcile_interval)
                # workers could not renew their leases meanwhile: give them one lease period to do so
                expire_after = time.monotonic() + runtime.settings.lease_seconds
            else:
                # the reconciler is what recovers lost work: a bug in one pass must not stop the next
                log.exception("reconciler pass failed")
        if once:
            return
        stop.wait(runtime.settings.reconcile_interval)
