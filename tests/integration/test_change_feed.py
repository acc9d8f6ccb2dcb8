"""The change feed: ordered, cursor-stable, and never skipping an event committed late."""

from __future__ import annotations

import sqlalchemy as sa

from searchjobs import clients


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


def test_an_older_transaction_with_a_higher_event_id_does_not_hide_a_younger_ones_event(client, runtime):
    headers = admin_headers(runtime)
    old_job, young_job = submit(client, headers), submit(client, headers)
    cursor = feed(client, headers)["next_cursor"]
    insert = sa.text("INSERT INTO search_job_events (job_id, kind, status, progress, version) "
                     "VALUES (:j, 'progress', 'pending', 0, 1)")
    with runtime.engine.connect() as old, runtime.engine.connect() as young:
        old.begin()
        old.execute(sa.text("SELECT pg_current_xact_id()"))  # the older transaction id ...
        young.begin()
        young.execute(insert, {"j": young_job})  # ... the younger one takes the lower event id
        old.execute(insert, {"j": old_job})
        old.commit()
        first = feed(client, headers, since=cursor)  # the old one is finished, the young one is not
        assert [e["job_id"] for e in first["events"]] == [old_job]
        young.commit()
    second = feed(client, headers, since=first["next_cursor"])
    assert [e["job_id"] for e in second["events"]] == [young_job]  # not skipped


def test_a_cursor_of_the_earlier_form_still_works(client, runtime):
    import base64

    headers = admin_headers(runtime)
    job_ids = [submit(client, headers) for _ in range(3)]
    events = feed(client, headers)["events"]
    legacy = base64.urlsafe_b64encode(str(events[0]["id"]).encode()).rstrip(b"=").decode()
    got = [e["job_id"] for e in feed(client, headers, since=legacy)["events"]]
    assert got[-2:] == job_ids[1:]  # nothing after the cursor is skipped (an earlier event may come again)
