"""The read path on real Valkey and Postgres: cache first, Postgres behind it, and either one down."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from searchjobs import links
from searchjobs.db import engine as db
from searchjobs.embedded import EmbeddedValkey, free_port
from searchjobs.jobs import store as job_queries
from searchjobs.jobs.cache import cache_key
from searchjobs.queue import connect
from searchjobs.runtime import Runtime
from searchjobs.web import create_app
from searchjobs.web import runtime as web_runtime
from tests.conftest import demo_image_bytes
from tests.integration.test_core_loop import submit_upload


def submit(client) -> tuple[str, str]:
    data = {"categories": "dress", "image": (io.BytesIO(demo_image_bytes(0, "dress")), "photo.png"),
            "phone_number": "06 12 34 56 78", "country_code": "33"}
    body = client.post("/api/search-jobs", data=data, content_type="multipart/form-data").get_json()
    return body["job_id"], body["result_url"].rsplit("/r/", 1)[1]


def app_on(runtime: Runtime):
    app = create_app(runtime=runtime)
    app.config["TESTING"] = True
    return app.test_client()


def closed_redis():
    return connect(f"redis://127.0.0.1:{free_port()}/0")


def closed_database():
    return db.make_engine(f"postgresql://nobody:nothing@127.0.0.1:{free_port()}/none", pool_size=1)


def test_a_miss_refills_the_cache_then_reads_hit(client, runtime):
    job_id, token = submit(client)
    runtime.redis.flushall()
    first = client.get(f"/api/search-jobs/{job_id}")
    assert first.status_code == 200 and first.headers["X-Cache"] == "miss"
    second = client.get(f"/api/search-jobs/{job_id}")
    assert second.headers["X-Cache"] == "hit" and second.get_json() == first.get_json()
    # the result link's token -> job id mapping is cached as well
    assert client.get(f"/api/results/{token}").headers["X-Cache"] == "miss"
    assert client.get(f"/api/results/{token}").headers["X-Cache"] == "hit"


def test_a_stale_write_never_replaces_the_cached_view(client, runtime, run_jobs):
    job_id, _ = submit(client)
    with runtime.db.connect() as conn:
        pending = job_queries.get(conn, job_id)
    run_jobs(["searches"])
    done = client.get(f"/api/search-jobs/{job_id}").get_json()
    assert done["status"] == "completed"
    assert runtime.cache.write_row(pending) is False  # a late writer holding the pending row
    again = client.get(f"/api/search-jobs/{job_id}")
    assert again.headers["X-Cache"] == "hit"
    assert again.get_json()["status"] == "completed" and again.get_json()["version"] == done["version"]


def test_redis_unreachable_reads_come_from_postgres_fast(settings, client, runtime):
    job_id, token = submit(client)
    down = app_on(Runtime(settings=settings, engine=runtime.engine, redis=closed_redis()))
    started = time.monotonic()
    status = down.get(f"/api/search-jobs/{job_id}")
    result = down.get(f"/api/results/{token}")
    page = down.get(f"/r/{token}")
    assert time.monotonic() - started < 3
    assert status.status_code == 200 and status.headers["X-Cache"] == "miss"
    assert status.get_json()["job_id"] == job_id
    assert result.status_code == 200 and page.status_code == 200


def test_redis_stopped_mid_test(settings, client, runtime, tmp_path: Path):
    """A private Valkey serves the cache, then stops: reads keep working from Postgres, no 5xx, no hang."""
    job_id, _ = submit(client)
    valkey = EmbeddedValkey(tmp_path, persist=False)
    valkey.start()
    try:
        private = app_on(Runtime(settings=settings, engine=runtime.engine, redis=connect(valkey.url)))
        assert private.get(f"/api/search-jobs/{job_id}").headers["X-Cache"] == "miss"
        assert private.get(f"/api/search-jobs/{job_id}").headers["X-Cache"] == "hit"
    finally:
        valkey.stop()
    started = time.monotonic()
    for _ in range(3):
        response = private.get(f"/api/search-jobs/{job_id}")
        assert response.status_code == 200 and response.headers["X-Cache"] == "miss"
    assert time.monotonic() - started < 3


def test_postgres_unreachable_serves_the_cached_view(settings, client, runtime):
    job_id, token = submit(client)
    assert client.get(f"/api/results/{token}").status_code == 200  # cache holds the view and the token
    engine = closed_database()
    try:
        down = app_on(Runtime(settings=settings, engine=engine, redis=runtime.redis))
        status = down.get(f"/api/search-jobs/{job_id}")
        assert status.status_code == 200 and status.headers["X-Cache"] == "hit"
        assert down.get(f"/api/results/{token}").status_code == 200
        assert down.get(f"/r/{token}").status_code == 200
    finally:
        engine.dispose()


@pytest.mark.parametrize("redis_up", [True, False])
def test_neither_has_it_503_with_retry_after(settings, client, runtime, redis_up):
    job_id, token = submit(client)
    runtime.redis.flushall()  # the cache lost it
    engine = closed_database()
    try:
        down = app_on(Runtime(settings=settings, engine=engine, redis=runtime.redis if redis_up else closed_redis()))
        for url in (f"/api/search-jobs/{job_id}", f"/api/results/{token}", f"/api/search-jobs/{job_id}/events"):
            response = down.get(url)
            assert response.status_code == 503, url
            assert response.headers["Retry-After"] and response.get_json()["error"]["code"] == "service_unavailable"
        page = down.get(f"/r/{token}")
        assert page.status_code == 503 and page.headers["Retry-After"] and page.mimetype == "text/html"
    finally:
        engine.dispose()


def test_unfinished_views_live_one_lease_and_finished_ones_the_full_ttl(client, runtime, run_jobs):
    job_id = submit_upload(client).get_json()["job_id"]
    assert 0 < runtime.redis.ttl(cache_key(job_id)) <= runtime.settings.lease_seconds
    run_jobs()
    assert runtime.settings.lease_seconds < runtime.redis.ttl(cache_key(job_id)) <= runtime.settings.cache_ttl


def test_a_refill_that_read_the_row_before_a_delete_cannot_bring_the_job_back(client, runtime, run_jobs):
    from searchjobs.jobs import store as job_queries
    from tests.integration.test_state_machine import api_key

    owner = api_key(runtime)
    data = {"categories": "dress", "image": (io.BytesIO(demo_image_bytes(0, "dress")), "photo.png")}
    job_id = client.post("/api/search-jobs", data=data, headers=owner).get_json()["job_id"]
    run_jobs()
    with runtime.db.connect() as conn:
        read_before_the_delete = job_queries.get(conn, job_id)
    assert client.delete(f"/api/search-jobs/{job_id}", headers=owner).status_code == 204
    assert runtime.cache.write_row(read_before_the_delete) is False  # the late refill is refused
    assert client.get(f"/api/search-jobs/{job_id}", headers=owner).status_code == 404


def test_the_reconciler_repairs_a_view_whose_write_was_skipped(client, runtime, run_jobs):
    from searchjobs.worker.reconciler import ReconcilerState, reconcile

    state = ReconcilerState()
    reconcile(runtime, state=state)
    job_id = submit_upload(client).get_json()["job_id"]
    stale = runtime.cache.read(job_id)
    run_jobs()
    runtime.redis.hset(cache_key(job_id), mapping={"v": stale["version"], "d": json.dumps(stale)})  # as if skipped
    assert client.get(f"/api/search-jobs/{job_id}").get_json()["status"] == "pending"
    assert reconcile(runtime, state=state).views_repaired == 1
    assert client.get(f"/api/search-jobs/{job_id}").get_json()["status"] == "completed"
    assert reconcile(runtime, state=state).views_repaired == 0  # the next pass finds nothing behind


def test_a_tombstone_redis_refused_is_written_by_the_next_reconciler_pass(settings, client, runtime, run_jobs):
    from searchjobs.worker.reconciler import ReconcilerState, reconcile
    from tests.integration.test_state_machine import api_key

    state = ReconcilerState()
    reconcile(runtime, state=state)
    owner = api_key(runtime)
    data = {"categories": "dress", "image": (io.BytesIO(demo_image_bytes(0, "dress")), "photo.png")}
    job_id = client.post("/api/search-jobs", data=data, headers=owner).get_json()["job_id"]
    run_jobs()
    assert client.get(f"/api/search-jobs/{job_id}", headers=owner).status_code == 200  # cached, full TTL

    redis_refuses = Runtime(settings=settings, engine=runtime.engine, redis=closed_redis())
    assert app_on(redis_refuses).delete(f"/api/search-jobs/{job_id}", headers=owner).status_code == 204
    assert runtime.cache.read(job_id) is not None  # the tombstone was refused: the old view is still there
    reconcile(runtime, state=state)
    assert client.get(f"/api/search-jobs/{job_id}", headers=owner).status_code == 404
    assert runtime.redis.hget(cache_key(job_id), "d") == b""


def test_a_job_id_naming_another_cache_key_is_only_not_found(client, runtime):
    from searchjobs import links

    job_id, token = submit(client)
    assert client.get(f"/api/results/{token}").status_code == 200  # caches the token's mapping
    for name in (f"token:{links.token_hash(token)}", f"../token:{links.token_hash(token)}"):
        assert client.get(f"/api/search-jobs/{name}").status_code == 404, name


def test_a_read_after_postgres_dropped_the_webs_pooled_connections_is_served(settings, runtime):
    """What a Postgres restart does to an idle web process: the backends behind its pooled connections
    are gone. Its next read goes to Postgres (a job id that was never submitted) and is answered 404,
    not 503, because the web's engines both ping a pooled connection at checkout."""
    web = create_app(settings)  # as gunicorn builds it, with its own Runtime
    web.config["TESTING"] = True
    client, web_rt = web.test_client(), web.extensions[web_runtime.EXTENSION]
    never_submitted = f"/api/search-jobs/{links.new_job_id()}"
    try:
        assert client.get(never_submitted).status_code == 404  # the read engine now pools a connection
        with web_rt.db.connect() as conn:
            backend = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
        with runtime.engine.begin() as conn:
            assert conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": backend}).scalar_one()
        response = client.get(never_submitted)
        assert response.status_code == 404, response.get_json()
    finally:
        web_rt.close()
