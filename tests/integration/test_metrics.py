"""/metrics: who may scrape it, what the counters count, and the state read from Redis and Postgres.

In-process app (prometheus-client in single-process mode, the global registry), real Postgres and
Redis. Counters are global to the test session, so each test compares before and after.
"""

from __future__ import annotations

import dataclasses

import pytest
from prometheus_client import REGISTRY

from searchjobs.embedded import free_port
from searchjobs.jobs.cache import cache_key
from searchjobs.runtime import Runtime, install
from searchjobs.web import create_app
from tests.integration.test_core_loop import submit_upload

REMOTE = {"REMOTE_ADDR": "203.0.113.9"}


def sample(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def scrape_text(client, **kwargs) -> str:
    response = client.get("/metrics", **kwargs)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.content_type.startswith("text/plain")
    return response.get_data(as_text=True)


def app_with(runtime, **changes):
    rt = Runtime(settings=dataclasses.replace(runtime.settings, **changes), engine=runtime.engine,
                 redis=runtime.redis)
    app = create_app(runtime=rt)
    app.config["TESTING"] = True
    return app


def test_without_a_token_only_loopback_may_scrape(client):
    assert client.get("/metrics").status_code == 200  # the test client comes from 127.0.0.1
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "::1"}).status_code == 200
    refused = client.get("/metrics", environ_base=REMOTE)
    assert refused.status_code == 403
    assert refused.get_json()["error"]["code"] == "forbidden"


def test_with_a_token_the_bearer_token_is_required_from_anywhere(runtime):
    client = app_with(runtime, metrics_token="s3cret-metrics-token").test_client()
    assert client.get("/metrics").status_code == 401  # loopback is not enough any more
    wrong = client.get("/metrics", headers={"Authorization": "Bearer nope"}, environ_base=REMOTE)
    assert wrong.status_code == 401 and wrong.headers["WWW-Authenticate"].startswith("Bearer")
    right = client.get("/metrics", headers={"Authorization": "Bearer s3cret-metrics-token"}, environ_base=REMOTE)
    assert right.status_code == 200


def test_a_job_moves_the_job_cache_http_and_sms_counters(client, runtime, run_jobs):
    before = {
        "submitted": sample("searchjobs_jobs_submitted_total"),
        "completed": sample("searchjobs_jobs_completed_total"),
        "hits": sample("searchjobs_cache_lookups_total", result="hit"),
        "misses": sample("searchjobs_cache_lookups_total", result="miss"),
        "sms": sample("searchjobs_sms_sends_total", outcome="sent"),
        "posts": sample("searchjobs_http_requests_total", route="/api/search-jobs", method="POST", status="202"),
        "reads": sample("searchjobs_http_requests_total", route="/api/search-jobs/<job_id>", method="GET",
                        status="200"),
        "waits": sample("searchjobs_job_queue_wait_seconds_count"),
        "writes": sample("searchjobs_progress_write_seconds_count"),
        "durations": sample("searchjobs_job_duration_seconds_count", outcome="completed"),
        "features": sample("searchjobs_job_stage_duration_seconds_count", stage="features"),
        "searched": sample("searchjobs_job_stage_duration_seconds_count", stage="searched"),
    }
    job_id = submit_upload(client, categories="dress, top", phone_number="06 12 34 56 78",
                           country_code="33").get_json()["job_id"]
    run_jobs()
    runtime.redis.delete(cache_key(job_id))  # the view expired: the next read goes to Postgres
    assert client.get(f"/api/search-jobs/{job_id}").headers["X-Cache"] == "miss"
    assert client.get(f"/api/search-jobs/{job_id}").headers["X-Cache"] == "hit"

    assert sample("searchjobs_jobs_submitted_total") == before["submitted"] + 1
    assert sample("searchjobs_jobs_completed_total") == before["completed"] + 1
    assert sample("searchjobs_cache_lookups_total", result="miss") == before["misses"] + 1
    assert sample("searchjobs_cache_lookups_total", result="hit") == before["hits"] + 1
    assert sample("searchjobs_sms_sends_total", outcome="sent") == before["sms"] + 1
    assert sample("searchjobs_http_requests_total", route="/api/search-jobs", method="POST",
                  status="202") == before["posts"] + 1
    assert sample("searchjobs_http_requests_total", route="/api/search-jobs/<job_id>", method="GET",
                  status="200") == before["reads"] + 2  # one series per route, not one per job
    assert sample("searchjobs_job_queue_wait_seconds_count") == before["waits"] + 1
    assert sample("searchjobs_progress_write_seconds_count") == before["writes"] + 5  # 2 categories: 5 steps
    assert sample("searchjobs_job_duration_seconds_count", outcome="completed") == before["durations"] + 1
    assert sample("searchjobs_job_stage_duration_seconds_count", stage="features") == before["features"] + 1
    assert sample("searchjobs_job_stage_duration_seconds_count", stage="searched") == before["searched"] + 2

    text = scrape_text(client)
    assert "searchjobs_jobs_completed_total" in text and "searchjobs_http_requests_total" in text
    assert 'searchjobs_sms_outbox{status="sent"} 1.0' in text


def test_queue_depth_workers_and_unfinished_jobs_are_read_at_scrape_time(client, runtime):
    from rq import Worker

    for _ in range(3):
        submit_upload(client, categories="shoes")
    worker = Worker(["searches"], connection=runtime.redis, name="metrics-test-worker")
    worker.register_birth()
    try:
        text = scrape_text(client)
    finally:
        worker.register_death()
    assert "searchjobs_redis_up 1.0" in text and "searchjobs_postgres_up 1.0" in text
    assert 'searchjobs_queue_depth{queue="searches"} 3.0' in text
    assert 'searchjobs_queue_depth{queue="notifications"} 0.0' in text
    assert 'searchjobs_workers_alive{state="' in text
    assert 'searchjobs_jobs_unfinished{status="pending"} 3.0' in text
    assert 'searchjobs_jobs_unfinished{status="processing"} 0.0' in text


@pytest.fixture
def redis_down_app(settings):
    """An app whose Redis is a closed port (Postgres is fine)."""
    rt = Runtime.from_settings(dataclasses.replace(settings, redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    app = create_app(runtime=rt)
    app.config["TESTING"] = True
    yield app
    install(None)
    rt.close()


def test_a_scrape_survives_redis_being_down(runtime, redis_down_app):
    text = scrape_text(redis_down_app.test_client())
    assert "searchjobs_redis_up 0.0" in text
    assert "searchjobs_postgres_up 1.0" in text
    assert not [line for line in text.splitlines() if line.startswith("searchjobs_queue_depth")]
