"""Submit -> Postgres -> RQ -> every progress step persisted -> results (in-process worker)."""

from __future__ import annotations

import io

import sqlalchemy as sa

from searchjobs import links
from tests.conftest import TEST_SECRET, demo_image_bytes


def submit_upload(client, categories="dress", image=None, **fields):
    data = {"categories": categories, "image": (io.BytesIO(image or demo_image_bytes(0, "dress")), "photo.png"),
            **fields}
    return client.post("/api/search-jobs", data=data, content_type="multipart/form-data")


def events_of(runtime, job_id):
    with runtime.engine.connect() as conn:
        return [dict(r) for r in conn.execute(
            sa.text("SELECT id, kind, status, progress, stage, version FROM search_job_events "
                    "WHERE job_id = :j ORDER BY id"), {"j": job_id}).mappings()]


def row_of(runtime, job_id):
    with runtime.engine.connect() as conn:
        return dict(conn.execute(sa.text("SELECT * FROM search_jobs WHERE job_id = :j"), {"j": job_id})
                    .mappings().one())


def test_submit_commits_pending_row_and_created_event(client, runtime):
    response = submit_upload(client, categories="dress, shoes")
    assert response.status_code == 202
    body = response.get_json()
    assert body["status"] == "pending" and body["progress"] == 0
    assert response.headers["Location"] == body["status_url"] == f"http://testserver/api/search-jobs/{body['job_id']}"
    assert len(body["job_id"]) >= 22  # >= 128 random bits, URL-safe
    token = body["result_url"].rsplit("/r/", 1)[1]
    assert body["result_url"] == f"http://testserver/r/{token}"

    row = row_of(runtime, body["job_id"])
    assert row["status"] == "pending" and row["progress"] == 0
    assert row["categories"] == ["dress", "shoes"]
    assert row["result_token_hash"] == links.token_hash(token)
    assert token not in str(row)  # only the hash is stored
    assert row["original_image_url"].startswith("http://testserver/images/")
    assert [e["kind"] for e in events_of(runtime, body["job_id"])] == ["created"]
    # the RQ job is a pointer: its id is the job id, its only argument too
    from rq.job import Job
    job = Job.fetch(body["job_id"], connection=runtime.redis)
    assert job.func_name == "searchjobs.jobs.search.run" and job.args == (body["job_id"],)


def test_worker_persists_every_step_and_completes(client, runtime, run_jobs):
    job_id = submit_upload(client, categories="dress,shoes,bag").get_json()["job_id"]
    run_jobs()
    row = row_of(runtime, job_id)
    assert row["status"] == "completed" and row["progress"] == 100 and row["stage"] == "done"
    assert row["attempts"] == 1 and row["started_at"] and row["finished_at"]
    assert row["finished_at"] >= row["started_at"] >= row["created_at"]
    events = events_of(runtime, job_id)
    kinds = [e["kind"] for e in events]
    assert kinds[0] == "created" and kinds[1] == "claimed" and kinds[-1] == "completed"
    stages = [e["stage"] for e in events]
    assert stages == ["queued", "claimed", "image_loaded", "features", "searched:dress", "searched:shoes",
                      "searched:bag", "ranked", "done"]
    progress = [e["progress"] for e in events]
    assert progress == sorted(progress) and progress[-1] == 100
    versions = [e["version"] for e in events]
    assert versions == sorted(set(versions)) and versions[-1] == row["version"]
    results = row["results"]
    assert set(results["categories"]) == {"dress", "shoes", "bag"}
    assert results["catalog_version"] and results["took_ms"] >= 0
    first = results["categories"]["dress"][0]
    assert set(first) == {"sku", "name", "price", "currency", "score", "image_url"}
    assert 0 <= first["score"] <= 1


def test_the_uploaded_catalog_image_finds_itself_first(client, runtime, run_jobs):
    from searchjobs.catalog import demo
    from tests.conftest import TEST_CATALOG_SIZE

    item = [i for i in demo.generate_items(TEST_CATALOG_SIZE, seed=7) if i.category == "shoes"][3]
    job_id = submit_upload(client, categories="shoes", image=item.image_png).get_json()["job_id"]
    run_jobs()
    hits = row_of(runtime, job_id)["results"]["categories"]["shoes"]
    assert hits[0]["sku"] == item.sku and hits[0]["score"] > 0.99
    assert all(h["sku"].startswith("DEMO-") for h in hits)
    assert len(hits) == 12 and [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)


def test_status_endpoint_never_shows_phone_or_results_to_anonymous(client, runtime, run_jobs):
    job_id = submit_upload(client, phone_number="06 12 34 56 78", country_code="33").get_json()["job_id"]
    run_jobs(["searches"])
    response = client.get(f"/api/search-jobs/{job_id}")
    body = response.get_json()
    assert response.status_code == 200
    assert body["status"] == "completed" and body["progress"] == 100 and body["sms"] is True
    assert "results" not in body
    assert "612345678" not in response.get_data(as_text=True)
    for field in ("stage", "attempts", "created_at", "started_at", "finished_at", "updated_at"):
        assert field in body


def test_result_token_reads_results(client, runtime, run_jobs):
    body = submit_upload(client).get_json()
    run_jobs()
    token = body["result_url"].rsplit("/", 1)[1]
    response = client.get(f"/api/results/{token}")
    assert response.status_code == 200
    assert response.get_json()["results"]["categories"]["dress"]
    assert client.get("/api/results/" + "A" * 43).status_code == 404
    assert client.get("/api/results/short").status_code == 404
    assert token == links.result_token(TEST_SECRET, body["job_id"])


def test_uploaded_image_is_served_back(client, runtime):
    image = demo_image_bytes(1, "dress")
    job_id = submit_upload(client, image=image).get_json()["job_id"]
    url = row_of(runtime, job_id)["original_image_url"]
    response = client.get(url.replace("http://testserver", ""))
    assert response.status_code == 200 and response.data == image and response.mimetype == "image/png"
    assert client.get("/images/nope").status_code == 404


def test_json_submit_with_image_url_fetches_it(client, runtime, run_jobs, image_server):
    url = image_server(demo_image_bytes(0, "bag"))
    response = client.post("/api/search-jobs", json={"image_url": url, "categories": ["bag"]})
    assert response.status_code == 202
    job_id = response.get_json()["job_id"]
    run_jobs()
    row = row_of(runtime, job_id)
    assert row["status"] == "completed", row["error"]
    assert row["original_image_url"] == url


def test_permanent_image_failure_fails_the_job_with_a_code(client, runtime, run_jobs, image_server):
    url = image_server(b"this is not an image", content_type="image/png")
    job_id = client.post("/api/search-jobs", json={"image_url": url, "categories": ["bag"]}).get_json()["job_id"]
    run_jobs()
    row = row_of(runtime, job_id)
    assert row["status"] == "failed" and row["error_code"] == "image_unreadable" and row["attempts"] == 1
    assert events_of(runtime, job_id)[-1]["kind"] == "failed"
    view = client.get(f"/api/search-jobs/{job_id}").get_json()
    assert view["error"]["code"] == "image_unreadable"


def _noisy_jpeg(size=(320, 240)) -> bytes:  # under the test client's in-memory upload size
    import hashlib

    from PIL import Image

    raw = hashlib.sha256(b"seed").digest() * (size[0] * size[1] * 3 // 32 + 1)
    buf = io.BytesIO()
    Image.frombytes("RGB", size, raw[: size[0] * size[1] * 3]).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def test_a_truncated_photo_fails_the_job_at_its_one_decode(client, runtime, run_jobs, image_server):
    # the worker checks the header only and decodes once (open_image): a cut file is refused there, for good
    whole = _noisy_jpeg()
    url = image_server(whole[: len(whole) // 2], content_type="image/jpeg")
    fetched = client.post("/api/search-jobs", json={"image_url": url, "categories": ["bag"]}).get_json()["job_id"]
    uploaded = submit_upload(client, image=whole).get_json()["job_id"]
    with runtime.engine.begin() as conn:  # bytes that went bad after the upload's own check
        conn.execute(sa.text("UPDATE images SET data = substring(data FROM 1 FOR length(data) / 2) "
                             "WHERE id = (SELECT image_id FROM search_jobs WHERE job_id = :j)"), {"j": uploaded})
    run_jobs()
    for job_id in (fetched, uploaded):
        row = row_of(runtime, job_id)
        assert (row["status"], row["error_code"], row["attempts"]) == ("failed", "image_unreadable", 1)


def test_categories_and_health(client, runtime):
    body = client.get("/api/categories").get_json()
    names = [c["category"] for c in body["categories"]]
    assert "dress" in names and names == sorted(names)
    assert client.get("/healthz").get_json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.get_json()["checks"] == {"database": "ok", "catalog": "ok", "redis": "ok"}


def test_submit_while_redis_is_down_still_answers_202(client, runtime, monkeypatch):
    import redis

    def down(*args, **kwargs):
        raise redis.exceptions.ConnectionError("down")

    monkeypatch.setattr("searchjobs.service.enqueue_search", down)
    response = submit_upload(client)
    assert response.status_code == 202
    assert row_of(runtime, response.get_json()["job_id"])["status"] == "pending"


def test_fast_progress_commits_still_persist_every_step(client, runtime, run_jobs):
    import dataclasses

    runtime.settings = dataclasses.replace(runtime.settings, progress_commit="fast")
    job_id = submit_upload(client, categories="dress,bag").get_json()["job_id"]
    run_jobs()
    assert row_of(runtime, job_id)["status"] == "completed"
    assert [e["stage"] for e in events_of(runtime, job_id)] == [
        "queued", "claimed", "image_loaded", "features", "searched:dress", "searched:bag", "ranked", "done"]
