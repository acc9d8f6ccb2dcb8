"""The change feed: ordered, cursor-stable, and never skipping an event committed late."""

from __future__ import annotations

import sqlalchemy as sa

from searchjobs.models import clients


def admin_headers(runtime) -> dict:
    with runtime.engine.begin() as conn:
        _, key = clients.create(conn, "ops", is_admin=True)
    return {"Authorization": f"Bearer {key}"}


def submit(client, headers):
    return client.post("/api/search-jobs", json={"image_url": "https://images.example/a.jpg", "categories": ["dress"]},
                       headers=headers).get_json()["job_id"]


def feed(client, headers, since=None, limit=50):
    query = f"?limit={limit}" + (f"&since={since}" if since else "")
    response = client.get("/api/changes" + query, headers=headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def test_feed_pages_through_events_in_order(client, runtime):
    headers = admin_headers(runtime)
    job_ids = [submit(client, headers) for _ in range(5)]
    first = feed(client, headers, limit=3)
    assert [e["job_id"] for e in first["events"]] == job_ids[:3] and first["has_more"]
    rest = feed(client, headers, since=first["next_cursor"])
    assert [e["job_id"] for e in rest["events"]] == job_ids[3:]
    assert feed(client, headers, since=rest["next_cursor"])["events"] == []


def test_an_event_of_a_transaction_still_running_holds_back_later_ones(client, runtime):
    headers = admin_headers(runtime)
    slow_job, fast_job = submit(client, headers), submit(client, headers)
    cursor = feed(client, headers)["next_cursor"]
    insert = sa.text("INSERT INTO search_job_events (job_id, kind, status, progress, version) "
                     "VALUES (:j, 'progress', 'pending', 0, 1)")
    with runtime.engine.connect() as slow:
        slow.begin()
        slow.execute(insert, {"j": slow_job})  # takes the lower event id, commits last
        with runtime.engine.begin() as fast:
            fast.execute(insert, {"j": fast_job})
        assert feed(client, headers, since=cursor)["events"] == []  # the later event waits ...
        slow.commit()
    events = feed(client, headers, since=cursor)["events"]
    assert [e["job_id"] for e in events] == [slow_job, fast_job]  # ... and nothing is skipped


def test_feed_needs_a_key_and_a_valid_cursor(client, runtime):
    assert client.get("/api/changes").status_code == 401
    headers = admin_headers(runtime)
    assert client.get("/api/changes?since=not-a-cursor", headers=headers).get_json()["error"]["code"] == "invalid_cursor"
