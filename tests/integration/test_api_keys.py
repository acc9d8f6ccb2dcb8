"""API keys end to end: the CLI makes them (shown once, stored hashed), Bearer auth uses them, and each
client sees and changes only its own jobs; admins see all; anonymous jobs are readable by id (status only)
and by result token; DELETE removes everything of a job; listings page with stable keyset cursors."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import re
import time

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from searchjobs import clients, links
from searchjobs.cli import main
from searchjobs.jobs.cache import cache_key, token_key
from tests.conftest import demo_image_bytes

KEY_PATTERN = re.compile(r"^sjk_[0-9a-f]{8}_[A-Za-z0-9_-]{32}$")  # 32 url-safe chars = 192 random bits


@pytest.fixture
def cli(servers, runtime, monkeypatch):
    """Run `searchjobs ...` in-process against the test servers (settings come from the environment)."""
    database_url, redis_url, _ = servers
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("SEARCHJOBS_LOG_FORMAT", "text")
    runner = CliRunner()

    def run(*args: str):
        return runner.invoke(main, list(args), catch_exceptions=False)

    return run


def make_key(runtime, name: str, *, admin: bool = False) -> dict:
    with runtime.engine.begin() as conn:
        key = clients.create(conn, name, is_admin=admin)[1]
    return {"Authorization": f"Bearer {key}"}


def submit(client, headers=None, *, upload: bool = False, phone: str | None = None, **extra):
    if upload:
        data = {"categories": "dress", "image": (io.BytesIO(demo_image_bytes(0, "dress")), "photo.png")}
        if phone:
            data["phone_number"] = phone
        response = client.post("/api/search-jobs", data=data, content_type="multipart/form-data",
                               headers=headers or {}, **extra)
    else:
        body = {"categories": ["dress"], "image_url": "https://images.example.com/a.png"}
        response = client.post("/api/search-jobs", json=body, headers=headers or {}, **extra)
    assert response.status_code == 202, response.get_data(as_text=True)
    return response.get_json()


def token_of(body: dict) -> str:
    return body["result_url"].rsplit("/r/", 1)[1]


def count(runtime, table: str, where: str = "true", **params) -> int:
    with runtime.engine.connect() as conn:
        return conn.execute(sa.text(f"SELECT count(*) FROM {table} WHERE {where}"), params).scalar_one()


# -- the CLI ----------------------------------------------------------------------------------

def test_keys_create_prints_the_key_once_and_stores_only_its_hash(cli, runtime, client):
    result = cli("keys", "create", "acme")
    assert result.exit_code == 0, result.output
    key = result.stdout.strip()
    assert KEY_PATTERN.match(key), key
    assert key not in result.stderr and "shown only now" in result.stderr

    with runtime.engine.connect() as conn:
        row = conn.execute(sa.text("SELECT * FROM api_clients")).mappings().one()
    assert row["name"] == "acme" and row["is_admin"] is False and row["revoked_at"] is None
    assert row["key_hash"] == hashlib.sha256(key.encode()).hexdigest()
    assert key not in json.dumps({k: str(v) for k, v in row.items()}), "the key itself is never stored"
    assert key.startswith(row["key_prefix"])

    # the printed key works, and using it is recorded
    response = client.get("/api/search-jobs", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200 and response.get_json()["jobs"] == []
    assert count(runtime, "api_clients", "last_used_at IS NOT NULL") == 1

    # two keys never collide
    other = cli("keys", "create", "acme-2").stdout.strip()
    assert KEY_PATTERN.match(other) and other != key


def test_keys_list_and_revoke(cli, runtime, client):
    key = cli("keys", "create", "acme").stdout.strip()
    cli("keys", "create", "ops", "--admin")
    listed = json.loads(cli("keys", "list", "--json").stdout)
    assert [(c["name"], c["is_admin"]) for c in listed] == [("acme", False), ("ops", True)]
    assert all("key_hash" not in c for c in listed)
    assert key not in cli("keys", "list").stdout

    prefix = listed[0]["key_prefix"]
    result = cli("keys", "revoke", prefix)
    assert result.exit_code == 0 and prefix in result.stdout
    response = client.get("/api/search-jobs", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 401 and response.get_json()["error"]["code"] == "invalid_api_key"
    assert json.loads(cli("keys", "list", "--json").stdout)[0]["revoked_at"] is not None

    assert cli("keys", "revoke", prefix).exit_code == 1, "revoking twice says so"
    assert cli("keys", "revoke", "nobody").exit_code == 1
    assert cli("keys", "revoke", "ops").exit_code == 0, "by name too"


def test_keys_create_refuses_a_blank_name(cli, runtime):
    result = cli("keys", "create", "  ")
    assert result.exit_code == 2
    assert count(runtime, "api_clients") == 0


# -- Bearer auth -------------------------------------------------------------------------------

@pytest.mark.parametrize("header", ["Bearer sjk_00000000_" + "a" * 32, "Basic YTpi", "Bearer ", "sjk_x"])
def test_unknown_or_malformed_keys_get_401_on_every_api_route(client, runtime, header):
    for method, path in [("get", "/api/search-jobs"), ("post", "/api/search-jobs"), ("get", "/api/changes"),
                         ("get", "/api/search-jobs/abc"), ("delete", "/api/search-jobs/abc")]:
        response = getattr(client, method)(path, headers={"Authorization": header})
        assert response.status_code == 401, (method, path)
        assert response.get_json()["error"]["code"] in ("invalid_api_key", "invalid_authorization")
    assert count(runtime, "search_jobs") == 0


def test_a_client_sees_and_changes_only_its_own_jobs(client, runtime):
    alice, bob, admin = make_key(runtime, "alice"), make_key(runtime, "bob"), make_key(runtime, "ops", admin=True)
    job = submit(client, alice)["job_id"]
    bobs = submit(client, bob)["job_id"]

    assert client.get(f"/api/search-jobs/{job}", headers=alice).status_code == 200
    assert client.get(f"/api/search-jobs/{job}", headers=admin).status_code == 200
    for method, path in [("get", f"/api/search-jobs/{job}"), ("post", f"/api/search-jobs/{job}/cancel"),
                         ("post", f"/api/search-jobs/{job}/retry"), ("delete", f"/api/search-jobs/{job}"),
                         ("get", f"/api/search-jobs/{job}/events")]:
        for headers in (bob, {}):  # another client, and nobody
            response = getattr(client, method)(path, headers=headers)
            assert response.status_code == 404, (method, path, headers)
            assert response.get_json()["error"]["code"] == "not_found"
    assert count(runtime, "search_jobs", "status = 'pending'") == 2, "nothing was changed"

    ids = lambda headers: [j["job_id"] for j in client.get("/api/search-jobs", headers=headers).get_json()["jobs"]]  # noqa: E731
    assert ids(alice) == [job] and ids(bob) == [bobs]
    assert set(ids(admin)) == {job, bobs}
    changes = lambda headers: {e["job_id"] for e in client.get("/api/changes", headers=headers).get_json()["events"]}  # noqa: E731
    assert changes(alice) == {job} and changes(bob) == {bobs} and changes(admin) == {job, bobs}

    # the admin may change anyone's job
    response = client.post(f"/api/search-jobs/{job}/cancel", headers=admin)
    assert response.status_code == 200 and response.get_json()["status"] == "cancelled"


def test_anonymous_submits_are_allowed_by_default_and_can_be_turned_off(client, runtime, settings):
    from searchjobs.runtime import Runtime
    from searchjobs.web import create_app

    submit(client)  # on by default
    assert count(runtime, "search_jobs", "client_id IS NULL") == 1

    rt = Runtime.from_settings(dataclasses.replace(settings, allow_anonymous=False))
    try:
        closed = create_app(runtime=rt).test_client()
        response = closed.post("/api/search-jobs", json={"categories": ["dress"], "image_url": "https://x.example/a"})
        assert response.status_code == 401
        assert response.get_json()["error"]["code"] == "api_key_required"
        assert count(runtime, "search_jobs") == 1, "nothing written"
        submit(closed, make_key(runtime, "alice"))  # keys still work
        assert count(runtime, "search_jobs") == 2
    finally:
        rt.close()


def test_anonymous_job_is_readable_by_id_status_only_and_by_token_in_full(client, runtime, run_jobs):
    alice = make_key(runtime, "alice")
    body = submit(client, upload=True)
    job_id, token = body["job_id"], token_of(body)
    run_jobs()

    by_id = client.get(f"/api/search-jobs/{job_id}").get_json()
    assert by_id["status"] == "completed" and by_id["progress"] == 100
    assert "results" not in by_id, "the job id alone shows the status, not the results"
    assert "results" not in client.get(f"/api/search-jobs/{job_id}", headers=alice).get_json()

    by_token = client.get(f"/api/results/{token}").get_json()
    assert by_token["job_id"] == job_id and by_token["results"]["categories"]["dress"]

    # an anonymous caller cannot read a keyed job by its id, nor list anything
    keyed = submit(client, alice)["job_id"]
    assert client.get(f"/api/search-jobs/{keyed}").status_code == 404
    assert client.get("/api/search-jobs").get_json()["error"]["code"] == "api_key_required"
    assert client.get("/api/changes").get_json()["error"]["code"] == "api_key_required"


def test_owner_sees_results_of_its_own_job(client, runtime, run_jobs):
    alice = make_key(runtime, "alice")
    job_id = submit(client, alice, upload=True)["job_id"]
    run_jobs()
    body = client.get(f"/api/search-jobs/{job_id}", headers=alice).get_json()
    assert body["status"] == "completed" and body["results"]["categories"]["dress"]


# -- DELETE ---------------------------------------------------------------------------------------

def test_delete_removes_the_job_its_events_image_outbox_and_cache(client, runtime, run_jobs):
    alice = make_key(runtime, "alice")
    body = submit(client, alice, upload=True, phone="+33612345678")
    job_id, token = body["job_id"], token_of(body)
    run_jobs()
    with runtime.engine.connect() as conn:
        image_id = conn.execute(sa.text("SELECT image_id FROM search_jobs WHERE job_id = :j"), {"j": job_id}).scalar()
        public_id = conn.execute(sa.text("SELECT public_id FROM images WHERE id = :i"), {"i": image_id}).scalar()
    assert client.get(f"/api/results/{token}").status_code == 200  # the token is cached too
    assert client.get(f"/images/{public_id}").status_code == 200
    assert count(runtime, "search_job_events", "job_id = :j", j=job_id) > 3
    assert count(runtime, "notifications", "job_id = :j", j=job_id) == 1
    assert runtime.redis.exists(cache_key(job_id))

    response = client.delete(f"/api/search-jobs/{job_id}", headers=alice)
    assert response.status_code == 204 and response.get_data() == b""

    assert count(runtime, "search_jobs", "job_id = :j", j=job_id) == 0
    assert count(runtime, "search_job_events", "job_id = :j", j=job_id) == 0
    assert count(runtime, "notifications", "job_id = :j", j=job_id) == 0
    assert count(runtime, "images", "id = :i", i=image_id) == 0
    # the view is a tombstone (no refill can bring it back) and the result-link mapping is gone
    assert runtime.redis.hget(cache_key(job_id), "d") == b""
    assert not runtime.redis.exists(token_key(links.token_hash(token)))
    for path in (f"/api/search-jobs/{job_id}", f"/api/results/{token}", f"/images/{public_id}"):
        assert client.get(path, headers=alice).status_code == 404, path
    assert client.delete(f"/api/search-jobs/{job_id}", headers=alice).status_code == 404
    assert client.get(f"/r/{token}").status_code == 404


def test_delete_of_a_pending_job_cancels_it_first_and_the_worker_finds_nothing(client, runtime, run_jobs):
    admin = make_key(runtime, "ops", admin=True)
    job_id = submit(client, make_key(runtime, "alice"))["job_id"]
    assert client.delete(f"/api/search-jobs/{job_id}", headers=admin).status_code == 204
    run_jobs()  # the queued RQ job points at nothing now: it must end quietly
    assert count(runtime, "search_jobs") == 0


def test_anonymous_callers_cannot_delete(client, runtime):
    job_id = submit(client)["job_id"]
    response = client.delete(f"/api/search-jobs/{job_id}")
    assert response.status_code == 403 and response.get_json()["error"]["code"] == "forbidden"
    assert count(runtime, "search_jobs") == 1


# -- keyset pagination ----------------------------------------------------------------------------

def test_listing_pages_with_stable_cursors(client, runtime):
    alice, bob = make_key(runtime, "alice"), make_key(runtime, "bob")
    mine = [submit(client, alice)["job_id"] for _ in range(7)]
    submit(client, bob)

    seen, cursor, pages = [], None, 0
    while True:
        query = {"limit": 3} | ({"cursor": cursor} if cursor else {})
        page = client.get("/api/search-jobs", query_string=query, headers=alice).get_json()
        seen += [j["job_id"] for j in page["jobs"]]
        pages += 1
        if pages == 1:
            submit(client, alice)  # a new job does not shift the pages after this one
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == list(reversed(mine)), "newest first, each once, nothing of bob's"

    # a cursor is stable: the same cursor gives the same page
    first = client.get("/api/search-jobs?limit=2", headers=alice).get_json()
    again = [client.get("/api/search-jobs", query_string={"limit": 2, "cursor": first["next_cursor"]},
                        headers=alice).get_json() for _ in range(2)]
    assert again[0] == again[1]

    pending = client.get("/api/search-jobs?status=pending&limit=200", headers=alice).get_json()
    assert len(pending["jobs"]) == 8 and pending["next_cursor"] is None
    assert client.get("/api/search-jobs?status=completed", headers=alice).get_json()["jobs"] == []


def test_change_feed_pages_with_a_cursor(client, runtime, run_jobs):
    alice = make_key(runtime, "alice")
    submit(client, alice, upload=True)
    run_jobs()
    everything = client.get("/api/changes?limit=200", headers=alice).get_json()["events"]
    assert everything[0]["kind"] == "created" and everything[-1]["status"] == "completed"

    collected, since = [], None
    while True:
        query = {"limit": 2} | ({"since": since} if since else {})
        page = client.get("/api/changes", query_string=query, headers=alice).get_json()
        collected += page["events"]
        since = page["next_cursor"]
        if not page["has_more"]:
            break
    assert [e["id"] for e in collected] == [e["id"] for e in everything]
    # polling at the end returns nothing new and keeps the cursor
    tail = client.get("/api/changes", query_string={"since": since}, headers=alice).get_json()
    assert tail["events"] == [] and tail["next_cursor"] == since


# -- the in-process key cache (issue 13): no Postgres round trip per request, revocation within 2 s ----------

def test_a_cached_key_costs_no_statement_per_request(runtime):
    with runtime.engine.begin() as conn:
        client_row, key = clients.create(conn, "acme")
    opened = []

    def connect():
        opened.append(1)
        return runtime.db.connect()

    cache = clients.KeyCache(epoch_check_seconds=3600)
    for _ in range(50):
        assert cache.authenticate(connect, key)["id"] == client_row["id"]
    assert len(opened) == 3, "one epoch read, one key lookup, one last_used_at touch for 50 requests"
    assert count(runtime, "api_clients", "last_used_at IS NOT NULL") == 1
    assert cache.authenticate(connect, key[:-1] + ("A" if key[-1] != "A" else "B")) is None, "a wrong key misses"


def test_a_revoked_key_is_refused_by_every_web_process_within_2_seconds(runtime, cli):
    from searchjobs.web import create_app

    key = cli("keys", "create", "acme").stdout.strip()
    headers = {"Authorization": f"Bearer {key}"}
    apps = [create_app(runtime=runtime) for _ in range(2)]  # two web processes, each with its own key cache
    web = [app.test_client() for app in apps]
    for one in web:
        for _ in range(3):
            assert one.get("/api/search-jobs", headers=headers).status_code == 200

    assert cli("keys", "revoke", "acme").exit_code == 0
    revoked = time.monotonic()
    refused_after = []
    for one in web:
        while one.get("/api/search-jobs", headers=headers).status_code != 401:
            assert time.monotonic() - revoked < 2.0, "a revoked key is still served after 2 s"
            time.sleep(0.05)
        refused_after.append(time.monotonic() - revoked)
    assert max(refused_after) < 2.0
    assert all(one.get("/api/search-jobs", headers=headers).status_code == 401 for one in web), "and stays refused"
