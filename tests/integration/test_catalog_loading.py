"""While the catalog's first load runs: the page says it is loading, the API answers 503 catalog_loading."""

from __future__ import annotations

import io
import threading

import sqlalchemy as sa

from searchjobs.catalog import loading
from searchjobs.catalog import store as catalog
from tests.conftest import TEST_CATALOG_SIZE, demo_image_bytes, wait_for

TOTAL = 5000  # items the pretended load puts in


def test_no_load_runs_by_default(runtime):
    with runtime.engine.connect() as conn:
        assert loading.progress(conn) is None


def test_during_a_load_the_page_says_so_and_the_api_refuses_with_503(client, runtime):
    with loading.announced(runtime.engine, TOTAL):
        with runtime.engine.connect() as conn:
            assert loading.progress(conn) == loading.LoadProgress(loaded=TEST_CATALOG_SIZE, total=TOTAL)

        page = client.get("/")
        assert page.status_code == 200 and page.headers["Refresh"] == "2"
        text = page.get_data(as_text=True)
        assert "The catalog is loading" in text and f"{TEST_CATALOG_SIZE} of 5,000" in text
        assert 'name="categories"' not in text  # no empty (or partial) category list to pick from

        for response in (client.get("/api/categories"),
                         client.post("/api/search-jobs", data={"categories": "shoes"})):
            assert response.status_code == 503 and int(response.headers["Retry-After"]) > 0
            error = response.get_json()["error"]
            assert error["code"] == "catalog_loading"
            assert (error["loaded"], error["total"]) == (TEST_CATALOG_SIZE, TOTAL)

        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.get_json()["checks"]["catalog"] == f"loading: {TEST_CATALOG_SIZE} of {TOTAL} items"

    with runtime.engine.connect() as conn:
        assert loading.progress(conn) is None
    assert client.get("/readyz").status_code == 200
    assert "The catalog is loading" not in client.get("/").get_data(as_text=True)
    assert client.get("/api/categories").status_code == 200
    image = (io.BytesIO(demo_image_bytes(0, "shoes")), "p.png", "image/png")
    assert client.post("/api/search-jobs", data={"categories": "shoes", "image": image}).status_code == 202


def test_a_loader_that_dies_leaves_no_load_behind(runtime):
    # the announcement lives in the loader's transaction: a dropped connection ends it
    raw = runtime.engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute("SELECT pg_advisory_xact_lock_shared(%s, %s)", (loading.LOCK_NAMESPACE, TOTAL))
        with runtime.engine.connect() as conn:
            assert loading.progress(conn).total == TOTAL
    finally:
        raw.invalidate()  # closes the socket, as a killed process would

    def no_load():  # the backend notices the closed socket and ends its transaction a moment later
        with runtime.engine.connect() as conn:
            return loading.progress(conn) is None
    wait_for(no_load, 5, "the dead loader's announcement to end")


def test_two_announcements_do_not_wait_for_each_other(runtime):
    done = threading.Event()
    with loading.announced(runtime.engine, TOTAL):
        def second():
            with loading.announced(runtime.engine, TOTAL + 1):
                done.set()
        thread = threading.Thread(target=second)
        thread.start()
        thread.join(10)
    assert done.is_set()


def test_a_batch_upsert_with_a_repeated_sku_keeps_the_last(runtime):
    def item(name: str) -> dict:
        return {"sku": "BATCH-1", "name": name, "category": "hat", "price": 10, "currency": "EUR",
                "image_url": None, "image_data": b"\x00\x01", "image_content_type": "image/png",
                "attributes": "{}", "embedding": None, "embedding_version": None}
    try:
        with runtime.engine.begin() as conn:
            catalog.upsert(conn, [item("first"), item("second")])
            catalog.upsert(conn, [])
        with runtime.engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT name, image_data FROM catalog_items WHERE sku = 'BATCH-1'")).all()
        assert [(name, bytes(data)) for name, data in rows] == [("second", b"\x00\x01")]
    finally:
        with runtime.engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM catalog_items WHERE sku = 'BATCH-1'"))
