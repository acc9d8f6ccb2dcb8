"""Live progress over SSE: every persisted step in order, resume without gaps, heartbeats, caps, fallback."""

from __future__ import annotations

import io
import json
import threading
import time

import sqlalchemy as sa

from searchjobs.embedded import free_port
from searchjobs.queue import connect
from searchjobs.runtime import Runtime
from tests.conftest import demo_image_bytes


def submit(client, categories="dress,shoes") -> tuple[str, str]:
    data = {"categories": categories, "image": (io.BytesIO(demo_image_bytes(0, "dress")), "photo.png")}
    body = client.post("/api/search-jobs", data=data, content_type="multipart/form-data").get_json()
    return body["job_id"], body["result_url"].rsplit("/r/", 1)[1]


def event_ids(runtime, job_id) -> list[int]:
    with runtime.engine.connect() as conn:
        return list(conn.execute(sa.text("SELECT id FROM search_job_events WHERE job_id = :j ORDER BY id"),
                                 {"j": job_id}).scalars())


def parse(chunks) -> list[dict]:
    """SSE text -> [{"id", "event", "data"} | {"comment"} | {"retry"}], in order."""
    items = []
    for block in "".join(chunks).split("\n\n"):
        if not block.strip():
            continue
        item = {}
        for line in block.split("\n"):
            if line.startswith(":"):
                item["comment"] = line[1:].strip()
            else:
                name, _, value = line.partition(": ")
                item[name] = json.loads(value) if name == "data" else value
        items.append(item)
    return items


def events_only(items) -> list[dict]:
    return [i for i in items if "id" in i]


def read_all(response) -> list[dict]:
    """Consume a stream to its end (the server closes it)."""
    try:
        return parse(chunk.decode() for chunk in response.response)
    finally:
        response.close()


def test_all_steps_in_order_then_the_stream_closes(client, runtime, run_jobs):
    job_id, _ = submit(client)
    run_jobs()
    response = client.get(f"/api/search-jobs/{job_id}/events", buffered=False)
    assert response.status_code == 200 and response.mimetype == "text/event-stream"
    assert response.headers["Cache-Control"] == "no-store"
    items = read_all(response)
    assert items[0] == {"retry": "2000"}
    events = events_only(items)
    assert [int(e["id"]) for e in events] == event_ids(runtime, job_id)
    assert [e["data"]["kind"] for e in events][:2] == ["created", "claimed"]
    assert [e["data"]["stage"] for e in events] == ["queued", "claimed", "image_loaded", "features",
                                                     "searched:dress", "searched:shoes", "ranked", "done"]
    assert [e["event"] for e in events] == ["progress"] * 7 + ["completed"]
    progress = [e["data"]["progress"] for e in events]
    assert progress == sorted(progress) and progress[-1] == 100
    assert events[-1]["data"]["status"] == "completed"


def test_last_event_id_resumes_with_exactly_the_rest(client, runtime, run_jobs):
    job_id, token = submit(client)
    run_jobs()
    ids = event_ids(runtime, job_id)
    response = client.get(f"/api/search-jobs/{job_id}/events", headers={"Last-Event-ID": str(ids[2])},
                          buffered=False)
    assert [int(e["id"]) for e in events_only(read_all(response))] == ids[3:]
    # the query parameter does the same, and the result-link stream is the same stream
    response = client.get(f"/api/results/{token}/events?last_event_id={ids[5]}", buffered=False)
    assert [int(e["id"]) for e in events_only(read_all(response))] == ids[6:]


def test_a_finished_job_with_nothing_left_answers_204(client, runtime, run_jobs):
    job_id, _ = submit(client)
    run_jobs()
    last = event_ids(runtime, job_id)[-1]
    response = client.get(f"/api/search-jobs/{job_id}/events", headers={"Last-Event-ID": str(last)})
    assert response.status_code == 204  # EventSource stops reconnecting


def test_live_steps_arrive_as_they_are_committed(client, runtime, run_jobs):
    """The stream wakes on the cache's publish: with a 30 s heartbeat it could only finish this fast by wake-ups."""
    client.application.config["SEARCHJOBS_SSE_HEARTBEAT"] = 30
    job_id, _ = submit(client)
    response = client.get(f"/api/search-jobs/{job_id}/events", buffered=False)
    items: list[dict] = []
    reader = threading.Thread(target=lambda: items.extend(read_all(response)), daemon=True)
    started = time.monotonic()
    reader.start()
    run_jobs()  # in this (main) thread: RQ installs signal handlers
    reader.join(timeout=10)
    assert not reader.is_alive()
    assert time.monotonic() - started < 10
    events = events_only(items)
    assert [int(e["id"]) for e in events] == event_ids(runtime, job_id)
    assert events[-1]["event"] == "completed"


def test_heartbeat_comment_while_idle(client, runtime):
    client.application.config["SEARCHJOBS_SSE_HEARTBEAT"] = 0.2
    job_id, _ = submit(client)  # nobody runs it: the stream stays idle
    response = client.get(f"/api/search-jobs/{job_id}/events", buffered=False)
    chunks = iter(response.response)
    try:
        assert next(chunks).decode().startswith("retry:")
        assert "event: progress" in next(chunks).decode()  # the `created` step
        started = time.monotonic()
        assert next(chunks).decode() == ": keep-alive\n\n"
        assert 0.1 < time.monotonic() - started < 2
        # an idle stream holds no database connection (streams read through runtime.db, its own pool)
        assert runtime.db.pool.checkedout() == 0
    finally:
        response.close()


def test_a_stream_ends_after_its_maximum_duration(client, runtime):
    client.application.config.update(SEARCHJOBS_SSE_HEARTBEAT=0.1, SEARCHJOBS_STREAM_MAX_SECONDS=0.5)
    job_id, _ = submit(client)
    started = time.monotonic()
    items = read_all(client.get(f"/api/search-jobs/{job_id}/events", buffered=False))
    assert 0.4 < time.monotonic() - started < 3
    assert len(events_only(items)) == 1 and {"comment": "keep-alive"} in items


def test_streams_beyond_the_cap_get_503_and_a_slot_frees_on_close(client, runtime):
    client.application.config["SEARCHJOBS_MAX_STREAMS"] = 1
    job_id, _ = submit(client)
    first = client.get(f"/api/search-jobs/{job_id}/events", buffered=False)
    assert first.status_code == 200
    second = client.get(f"/api/search-jobs/{job_id}/events", buffered=False)
    assert second.status_code == 503 and second.headers["Retry-After"]
    assert second.get_json()["error"]["code"] == "too_many_streams"
    first.close()  # never iterated: the slot is still released
    third = client.get(f"/api/search-jobs/{job_id}/events", buffered=False)
    assert third.status_code == 200
    third.close()


def test_unknown_job_token_and_bad_cursor(client, runtime):
    assert client.get("/api/search-jobs/nope/events").status_code == 404
    assert client.get("/api/results/" + "A" * 43 + "/events").status_code == 404
    assert client.get("/api/results/short/events").status_code == 404
    job_id, _ = submit(client)
    response = client.get(f"/api/search-jobs/{job_id}/events", headers={"Last-Event-ID": "abc"})
    assert response.status_code == 400 and response.get_json()["error"]["code"] == "invalid_last_event_id"


def test_a_job_of_an_api_client_is_hidden_from_others(client, runtime):
    from searchjobs import clients

    with runtime.engine.begin() as conn:
        _, key = clients.create(conn, "shop")
    data = {"categories": "dress", "image": (io.BytesIO(demo_image_bytes(0, "dress")), "photo.png")}
    job_id = client.post("/api/search-jobs", data=data, content_type="multipart/form-data",
                         headers={"Authorization": f"Bearer {key}"}).get_json()["job_id"]
    assert client.get(f"/api/search-jobs/{job_id}/events").status_code == 404
    owner = client.get(f"/api/search-jobs/{job_id}/events", headers={"Authorization": f"Bearer {key}"},
                       buffered=False)
    assert owner.status_code == 200
    owner.close()


def test_without_redis_the_stream_polls_the_table(settings, runtime, run_jobs, client):
    """Redis down for the web process: no wake-ups, so the stream re-reads every 2 s and still sees every step."""
    from searchjobs.web import create_app

    job_id, _ = submit(client)
    down = Runtime(settings=settings, engine=runtime.engine, redis=connect(f"redis://127.0.0.1:{free_port()}/0"))
    app = create_app(runtime=down)
    app.config.update(TESTING=True, SEARCHJOBS_SSE_HEARTBEAT=30)
    response = app.test_client().get(f"/api/search-jobs/{job_id}/events", buffered=False)
    assert response.status_code == 200
    items: list[dict] = []
    reader = threading.Thread(target=lambda: items.extend(read_all(response)), daemon=True)
    reader.start()
    run_jobs()  # installs the real runtime again for the worker
    reader.join(timeout=10)
    assert not reader.is_alive()
    assert [int(e["id"]) for e in events_only(items)] == event_ids(runtime, job_id)


def test_a_stream_of_a_deleted_job_ends_at_once(client, runtime):
    from tests.integration.test_state_machine import api_key

    client.application.config["SEARCHJOBS_SSE_HEARTBEAT"] = 5
    owner = api_key(runtime)
    data = {"categories": "dress", "image": (io.BytesIO(demo_image_bytes(0, "dress")), "photo.png")}
    job_id = client.post("/api/search-jobs", data=data, headers=owner).get_json()["job_id"]
    response = client.get(f"/api/search-jobs/{job_id}/events", headers=owner, buffered=False)
    chunks = iter(response.response)
    try:
        assert next(chunks).decode().startswith("retry:")
        assert "event: progress" in next(chunks).decode()  # the `created` step
        threading.Timer(0.3, lambda: client.delete(f"/api/search-jobs/{job_id}", headers=owner)).start()
        started = time.monotonic()
        assert list(chunks) == []  # the stream ends, with no keep-alive in between
        assert time.monotonic() - started < 2  # not after the heartbeat or the maximum duration
    finally:
        response.close()
