"""Rate limits (searchjobs/web/limits.py): per API key, per client IP without one (stricter), submits and
other calls counted apart, 429 with Retry-After and RateLimit-* headers; with Redis down, the same limits
are counted per process (Flask-Limiter's in-memory fallback), so every caller keeps being served."""

from __future__ import annotations

import dataclasses
import socket

import pytest
import sqlalchemy as sa

from searchjobs import clients
from searchjobs.errors import ConfigError

SUBMIT = "/api/search-jobs"
BODY = {"categories": ["dress"], "image_url": "https://images.example.com/a.png"}


def limited_settings(settings, **overrides):
    limits = {"rate_limits": True, "rate_limit_anonymous": "3/minute", "rate_limit_keyed": "5/minute",
              "rate_limit_anonymous_reads": "6/minute", "rate_limit_keyed_reads": "8/minute"}
    return dataclasses.replace(settings, **(limits | overrides))


@pytest.fixture
def make_app(settings):
    from searchjobs.runtime import Runtime
    from searchjobs.web import create_app

    runtimes = []

    def make(**overrides):
        rt = Runtime.from_settings(limited_settings(settings, **overrides))
        runtimes.append(rt)
        app = create_app(runtime=rt)
        app.config["TESTING"] = True
        return app

    yield make
    for rt in runtimes:
        rt.close()


@pytest.fixture
def limited(make_app, runtime):
    return make_app().test_client()


def key_for(runtime, name: str) -> dict:
    with runtime.engine.begin() as conn:
        return {"Authorization": f"Bearer {clients.create(conn, name)[1]}"}


def jobs_count(runtime) -> int:
    with runtime.engine.connect() as conn:
        return conn.execute(sa.text("SELECT count(*) FROM search_jobs")).scalar_one()


def from_ip(address: str) -> dict:
    return {"environ_base": {"REMOTE_ADDR": address}}


def assert_rate_limited(response) -> int:
    assert response.status_code == 429, response.get_data(as_text=True)
    assert response.get_json()["error"]["code"] == "rate_limited"
    retry_after = int(response.headers["Retry-After"])
    assert 1 <= retry_after <= 60
    assert response.headers["RateLimit-Remaining"] == "0"
    return retry_after


def test_anonymous_submits_are_limited_per_ip(limited, runtime):
    for expected_remaining in (2, 1, 0):
        response = limited.post(SUBMIT, json=BODY)
        assert response.status_code == 202
        assert response.headers["RateLimit-Limit"] == "3"
        assert response.headers["RateLimit-Remaining"] == str(expected_remaining)
        assert 1 <= int(response.headers["RateLimit-Reset"]) <= 60
    assert_rate_limited(limited.post(SUBMIT, json=BODY))
    assert jobs_count(runtime) == 3, "the refused submit wrote nothing"

    # another address has its own budget; the limited one can still read
    assert limited.post(SUBMIT, json=BODY, **from_ip("203.0.113.9")).status_code == 202
    assert limited.get("/api/categories").status_code == 200


def test_the_headers_come_from_the_hit_one_round_trip_per_request(limited, runtime, monkeypatch):
    """The window read with the hit writes the RateLimit-* headers: Redis is not asked a second time."""
    from limits.storage import RedisStorage

    second_reads = []
    original = RedisStorage.get_sliding_window
    monkeypatch.setattr(RedisStorage, "get_sliding_window",
                        lambda self, *args: second_reads.append(args) or original(self, *args))
    for expected_remaining in (2, 1):
        response = limited.post(SUBMIT, json=BODY)
        assert response.headers["RateLimit-Remaining"] == str(expected_remaining)
    assert second_reads == []
    runtime.redis.script_flush()  # a restarted Redis has forgotten the scripts: loaded again, the hit counted once
    assert limited.post(SUBMIT, json=BODY).headers["RateLimit-Remaining"] == "0"
    assert_rate_limited(limited.post(SUBMIT, json=BODY))
    assert jobs_count(runtime) == 3


def test_a_forged_x_forwarded_for_does_not_escape_the_limit(limited):
    for number in range(3):
        assert limited.post(SUBMIT, json=BODY, headers={"X-Forwarded-For": f"198.51.100.{number}"}).status_code == 202
    assert_rate_limited(limited.post(SUBMIT, json=BODY, headers={"X-Forwarded-For": "198.51.100.99"}))


def test_behind_trusted_proxies_the_address_they_saw_is_used(make_app):
    client = make_app(trusted_proxies=1).test_client()
    proxy = from_ip("10.0.0.2")  # every request arrives through our proxy
    for _ in range(3):
        assert client.post(SUBMIT, json=BODY, headers={"X-Forwarded-For": "198.51.100.7"}, **proxy).status_code == 202
    # the client forges a hop in front: the proxy appends the real address, which is what counts
    forged = {"X-Forwarded-For": "203.0.113.1, 198.51.100.7"}
    assert_rate_limited(client.post(SUBMIT, json=BODY, headers=forged, **proxy))
    # another client behind the same proxy has its own budget
    assert client.post(SUBMIT, json=BODY, headers={"X-Forwarded-For": "198.51.100.8"}, **proxy).status_code == 202


def test_keyed_clients_are_limited_per_key_and_more_generously(limited, runtime):
    alice, bob = key_for(runtime, "alice"), key_for(runtime, "bob")
    for _ in range(5):
        assert limited.post(SUBMIT, json=BODY, headers=alice).status_code == 202
    response = limited.post(SUBMIT, json=BODY, headers=alice)
    assert_rate_limited(response)
    assert response.headers["RateLimit-Limit"] == "5"
    # same address, other key: its own budget; anonymous from that address too
    assert limited.post(SUBMIT, json=BODY, headers=bob).status_code == 202
    assert limited.post(SUBMIT, json=BODY).status_code == 202
    assert jobs_count(runtime) == 7


def test_reads_have_their_own_budget(limited, runtime):
    job_id = limited.post(SUBMIT, json=BODY).get_json()["job_id"]
    for _ in range(2):
        limited.post(SUBMIT, json=BODY)
    assert limited.post(SUBMIT, json=BODY).status_code == 429
    for _ in range(6):  # submits spent, reads untouched
        response = limited.get(f"/api/search-jobs/{job_id}")
        assert response.status_code == 200 and response.headers["RateLimit-Limit"] == "6"
    assert_rate_limited(limited.get(f"/api/search-jobs/{job_id}"))
    assert_rate_limited(limited.get("/api/categories"))  # one read budget for every read route


def test_pages_probes_and_documents_are_not_limited(limited):
    for _ in range(10):
        for path in ("/healthz", "/openapi.json", "/docs"):
            response = limited.get(path)
            assert response.status_code == 200 and "RateLimit-Limit" not in response.headers


def test_counters_live_in_redis_under_our_prefix(limited, runtime):
    limited.post(SUBMIT, json=BODY)
    assert runtime.redis.keys("searchjobs:ratelimit*")


def test_limits_are_off_in_the_default_test_settings(client):
    response = client.get("/api/categories")
    assert response.status_code == 200 and "RateLimit-Limit" not in response.headers


def test_a_bad_limit_setting_stops_the_app_at_start(make_app):
    with pytest.raises(ConfigError):
        make_app(rate_limit_keyed="lots")


@pytest.fixture
def dead_redis_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"  # nothing listens there now


def test_redis_down_keyed_callers_are_served_and_limited_in_memory(make_app, runtime, dead_redis_url):
    client = make_app(redis_url=dead_redis_url).test_client()
    alice = key_for(runtime, "alice")
    for _ in range(5):  # the keyed limit, counted by this process while Redis is away
        response = client.post(SUBMIT, json=BODY, headers=alice)
        assert response.status_code == 202, response.get_data(as_text=True)
        assert response.headers["RateLimit-Limit"] == "5"
    job_id = response.get_json()["job_id"]
    assert response.headers["RateLimit-Remaining"] == "0"
    refused = client.post(SUBMIT, json=BODY, headers=alice)
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
    assert refused.get_json()["error"]["code"] == "rate_limited"
    assert client.get(f"/api/search-jobs/{job_id}", headers=alice).status_code == 200
    assert jobs_count(runtime) == 5  # pending in Postgres; the reconciler enqueues them later


def test_redis_down_anonymous_callers_are_served_and_limited_in_memory(make_app, runtime, dead_redis_url):
    healthy = make_app().test_client()
    body = healthy.post(SUBMIT, json=BODY).get_json()
    token = body["result_url"].rsplit("/r/", 1)[1]

    client = make_app(redis_url=dead_redis_url).test_client()
    for _ in range(3):  # the anonymous submit limit
        response = client.post(SUBMIT, json=BODY)
        assert response.status_code == 202, response.get_data(as_text=True)
    refused = client.post(SUBMIT, json=BODY)
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
    assert jobs_count(runtime) == 4, "the refused submit wrote nothing"

    # status reads by job id and result links keep working from Postgres
    assert client.get(f"/api/search-jobs/{body['job_id']}").status_code == 200
    response = client.get(f"/api/results/{token}")
    assert response.status_code == 200 and response.get_json()["job_id"] == body["job_id"]
    assert client.get("/healthz").status_code == 200
