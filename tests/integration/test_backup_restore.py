"""Backup and restore: Postgres is the only thing to back up.

A `pg_dump -Fc` taken while jobs are pending and processing is restored with `pg_restore` into a
fresh database; Redis is then empty (FLUSHALL: a new or lost Redis). The reconciler alone puts
every unfinished job back on the queue, and workers complete them all, SMS included.
"""

from __future__ import annotations

import dataclasses
import secrets
import shutil
import subprocess
from urllib.parse import urlsplit, urlunsplit

import pytest
import sqlalchemy as sa

from searchjobs.db import engine as db
from searchjobs.jobs.lifecycle import JobAttempt
from searchjobs.runtime import Runtime, install
from searchjobs.worker.reconciler import reconcile
from searchjobs.worker.worker import run_worker
from tests.integration.test_core_loop import submit_upload

pytestmark = pytest.mark.slow


def pg_tool(servers, name: str) -> tuple[str, dict]:
    """(path of pg_dump / pg_restore, subprocess kwargs): the embedded build, run as its unprivileged user."""
    from searchjobs import embedded

    if servers[2] is not None:
        return servers[2].postgres.bin(name), embedded.run_as_server_user()
    found = shutil.which(name)  # external servers: the client tools on PATH must match their version
    if found is None:
        pytest.skip(f"{name} not found for the external DATABASE_URL")
    return found, {}


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@pytest.fixture
def fresh_database(settings):
    """The URL of a new empty database on the same server, dropped afterwards."""
    name = f"restored_{secrets.token_hex(4)}"
    admin = db.make_engine(with_database(settings.database_url, "postgres"), pool_size=1)
    with db.autocommit(admin).connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    yield with_database(settings.database_url, name)
    with db.autocommit(admin).connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def test_restored_database_and_empty_redis_complete_every_unfinished_job(
    servers, settings, runtime, client, fresh_database, tmp_path,
):
    # before the backup: one completed job, three pending (one will send an SMS), one processing
    done = submit_upload(client, categories="top").get_json()["job_id"]
    run_worker(runtime, burst=True, logging_level="WARNING")
    pending = [submit_upload(client, categories=c, **extra).get_json()["job_id"]
               for c, extra in (("dress", {"phone_number": "06 12 34 56 78", "country_code": "33"}),
                                ("shoes", {}), ("dress, top", {}))]
    running = submit_upload(client, categories="dress").get_json()["job_id"]
    assert JobAttempt.claim(runtime, running) is not None  # a worker was in the middle of this one
    runtime.current_attempt = None

    dump = tmp_path / "searchjobs.dump"
    pg_dump, as_user = pg_tool(servers, "pg_dump")
    with open(dump, "wb") as out:  # written by us, so the unprivileged user needs no access to tmp_path
        subprocess.run([pg_dump, "-Fc", "--dbname", settings.database_url], stdout=out, check=True, timeout=60,
                       stderr=subprocess.PIPE, **as_user)

    pg_restore, as_user = pg_tool(servers, "pg_restore")
    with open(dump, "rb") as source:
        restored = subprocess.run([pg_restore, "--no-owner", "--exit-on-error", "--dbname", fresh_database],
                                  stdin=source, capture_output=True, text=True, timeout=120, **as_user)
    assert restored.returncode == 0, restored.stderr
    runtime.redis.flushall()  # the Redis that comes with the restore is empty

    rt = Runtime.from_settings(dataclasses.replace(settings, database_url=fresh_database))
    install(rt)
    try:
        with rt.engine.begin() as conn:
            # time has passed since the backup: the running job's worker is long gone
            conn.execute(sa.text("UPDATE search_jobs SET lease_expires_at = now() - interval '1 second' "
                                 "WHERE status = 'processing'"))
        # one pass, at once: Redis lost its data (the reconciler's marker is gone), so no grace applies
        report = reconcile(rt)
        assert report.expired == 1 and sorted(report.requeued) == sorted([*pending, running])
        run_worker(rt, burst=True, logging_level="WARNING")
        run_worker(rt, burst=True, logging_level="WARNING")  # the SMS enqueued by the last search, if any

        with rt.engine.connect() as conn:
            rows = {r["job_id"]: r for r in conn.execute(sa.text(
                "SELECT job_id, status, progress, attempts FROM search_jobs")).mappings()}
            sms = conn.execute(sa.text("SELECT status FROM notifications")).scalars().all()
        assert set(rows) == {*pending, done, running}
        assert all(r["status"] == "completed" and r["progress"] == 100 for r in rows.values()), rows
        assert rows[running]["attempts"] == 2  # the interrupted attempt, then the one after the restore
        assert sorted(sms) == ["sent"]
    finally:
        install(runtime)
        rt.close()
