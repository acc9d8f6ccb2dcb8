"""The pages: they render, they are labelled, they carry the security headers, they never show a phone."""

from __future__ import annotations

import io
import re
import threading
import time

import sqlalchemy as sa

from searchjobs.db import engine as db
from searchjobs.embedded import free_port
from searchjobs.runtime import Runtime
from searchjobs.web import create_app
from tests.conftest import demo_image_bytes

PHONE_DIGITS = ("612345678", "12 34 56 78", "0612")


def submit(client, phone=True) -> str:
    data = {"categories": "dress,shoes", "image": (io.BytesIO(demo_image_bytes(0, "dress")), "photo.png")}
    if phone:
        data.update(phone_number="06 12 34 56 78", country_code="33")
    body = client.post("/api/search-jobs", data=data, content_type="multipart/form-data").get_json()
    return body["result_url"].rsplit("/r/", 1)[1]


def assert_page_headers(response):
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["X-Frame-Options"] == "DENY"


def assert_no_inline_script(html: str):
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), "inline script breaks the CSP"
    assert not re.search(r"\son[a-z]+=", html), "inline event handlers break the CSP"


def test_submit_page(client, runtime):
    response = client.get("/")
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and response.mimetype == "text/html"
    assert_page_headers(response)
    assert_no_inline_script(html)
    assert '<html lang="en">' in html and "<h1>" in html
    assert 'accept="image/*" capture="environment"' in html
    # every control has a label
    controls = re.findall(r'<(?:input|select)[^>]*\bid="([^"]+)"', html)
    assert {"camera", "photo", "phone_number", "country_code", "category-dress", "category-shoes"} <= set(controls)
    for control in controls:
        assert f'<label for="{control}"' in html or f'<label class="button secondary" for="{control}"' in html, control
    # categories come from the catalog; countries from the short list; none chosen by default
    assert len(re.findall(r'name="categories"', html)) == 10
    assert '<option value="">Choose…</option>' in html and "selected" not in html
    assert "/static/submit.js" in html


def test_static_files_are_served(client, runtime):
    for name, mimetype in (("submit.js", "text/javascript"), ("result.js", "text/javascript"),
                           ("style.css", "text/css")):
        response = client.get(f"/static/{name}")
        assert response.status_code == 200 and response.mimetype == mimetype
        response.close()


def test_result_page_while_running_shows_progress_and_the_sms_notice(client, runtime):
    token = submit(client)
    response = client.get(f"/r/{token}")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert_page_headers(response)
    assert_no_inline_script(html)
    assert response.headers["Cache-Control"] == "private, no-store"
    assert '<progress id="progress" max="100" value="0"' in html
    assert "Waiting for a free worker" in html
    assert "You can close this page; we'll text you a link when your results are ready." in html
    assert "product-card" not in html and "/static/result.js" in html
    for digits in PHONE_DIGITS:
        assert digits not in html


def test_result_page_when_completed_shows_product_cards(client, runtime, run_jobs):
    token = submit(client)
    run_jobs(["searches"])
    response = client.get(f"/r/{token}")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert_no_inline_script(html)
    assert "Your results are ready" in html and "<progress" not in html and "result.js" not in html
    assert html.count('class="product-card"') == 24  # 12 per category, two categories
    assert re.search(r"<h2[^>]*>Dress", html) and re.search(r"<h2[^>]*>Shoes", html)
    assert re.search(r'<img src="http://testserver/catalog/images/DEMO-[^"]+" alt="[^"]+"', html)
    assert re.search(r'<p class="product-price">€\d+\.\d\d</p>', html)
    assert re.search(r'<p class="product-score">\d{1,3}% match</p>', html)
    assert "Demo catalog" in html
    for digits in PHONE_DIGITS:
        assert digits not in html


def test_result_page_of_a_failed_job_shows_the_error(client, runtime, run_jobs, image_server):
    url = image_server(b"this is not an image", content_type="image/png")
    body = client.post("/api/search-jobs", json={"image_url": url, "categories": ["bag"]}).get_json()
    run_jobs(["searches"])
    error = client.get(body["status_url"]).get_json()["error"]
    html = client.get("/r/" + body["result_url"].rsplit("/r/", 1)[1]).get_data(as_text=True)
    assert "The search failed" in html and error["message"].replace("'", "&#39;") in html
    assert "product-card" not in html


def test_unknown_or_malformed_token_is_a_404_page(client, runtime):
    for token in ("A" * 43, "short", "x" * 300):
        response = client.get(f"/r/{token}")
        assert response.status_code == 404 and response.mimetype == "text/html"
        assert "Link not found" in response.get_data(as_text=True)
        assert_page_headers(response)


def test_api_responses_carry_the_headers_too(client, runtime):
    assert_page_headers(client.get("/api/categories"))
    assert_page_headers(client.get("/api/search-jobs/nope"))


def test_submit_page_without_the_database_is_a_503_page(settings, runtime):
    engine = db.make_engine(f"postgresql://nobody:nothing@127.0.0.1:{free_port()}/none", pool_size=1)
    try:
        app = create_app(runtime=Runtime(settings=settings, engine=engine, redis=runtime.redis))
        response = app.test_client().get("/")
        assert response.status_code == 503 and response.headers["Retry-After"]
        assert "Temporarily unavailable" in response.get_data(as_text=True)
    finally:
        engine.dispose()


def test_categories_are_served_from_the_process_facts_and_a_change_shows_within_their_ttl(client, runtime):
    """`/` and GET /api/categories read no Postgres once the catalog is settled; an import shows within
    CatalogFacts.ttl (30 s by default; 1 s here)."""
    runtime.catalog_facts.ttl = 1.0
    statements = []
    sa.event.listen(runtime.db, "before_cursor_execute", lambda *args: statements.append(args[2]))
    assert client.get("/api/categories").status_code == 200  # settles: asks about a load, reads the facts
    statements.clear()
    assert client.get("/").status_code == 200
    before = client.get("/api/categories").get_json()["categories"]
    assert statements == []  # no load check, no GROUP BY per request
    with runtime.engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO catalog_items (sku, name, category, price) "
                             "VALUES ('FRESHNESS-1', 'Fresh item', 'freshness-test', 1)"))
    try:
        changed = time.monotonic()
        while True:
            listed = client.get("/api/categories").get_json()["categories"]
            if any(c["category"] == "freshness-test" for c in listed):
                break
            assert listed == before
            assert time.monotonic() - changed < 1.0 + 1.0, "the new category did not show within the ttl"
            time.sleep(0.05)
        assert 'value="freshness-test"' in client.get("/").get_data(as_text=True)
    finally:
        with runtime.engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM catalog_items WHERE sku = 'FRESHNESS-1'"))


def test_a_request_does_not_queue_behind_another_requests_stuck_catalog_question(client, runtime):
    """When the settled period ends, one request asks Postgres about the catalog and the others wait for its
    answer; a question stuck on a Postgres cut off (10 s per try) must not queue every thread of the process
    behind it, one timeout after another: a waiter gives up after the pool's own wait and answers 503."""
    runtime.catalog_facts.ttl = 0.2
    assert client.get("/api/categories").status_code == 200  # settled
    time.sleep(0.3)  # the settled period is over: the next request asks again
    blocker = runtime.engine.connect()
    transaction = blocker.begin()
    blocker.execute(sa.text("LOCK TABLE catalog_items IN ACCESS EXCLUSIVE MODE"))  # the category read hangs
    asking = []
    first = threading.Thread(target=lambda: asking.append(client.get("/api/categories").status_code))
    try:
        first.start()
        time.sleep(0.5)  # it now holds the question, stuck in its category read
        started = time.monotonic()
        waiter = client.get("/api/categories")
        waited = time.monotonic() - started
        assert (waiter.status_code, waiter.get_json()["error"]["code"]) == (503, "service_unavailable")
        assert waiter.headers["Retry-After"]
        assert waited < runtime.db.pool.timeout() + 1.5, waited
    finally:
        transaction.rollback()
        blocker.close()
        first.join(10)
    assert asking == [200]  # the stuck one is answered once Postgres answers


def test_a_category_the_page_lists_is_one_a_submit_accepts(client, runtime):
    """The page's categories and the submit's category check come from one read of the catalog: a category
    imported a moment ago is offered and refused by neither, or by both, never offered then refused."""
    from tests.integration.test_core_loop import submit_upload

    runtime.catalog_facts.ttl = 1.0
    assert client.get("/api/categories").status_code == 200  # the listed categories are read now
    time.sleep(0.5)
    assert submit_upload(client, categories="dress").status_code == 202  # the accepted ones, if kept apart, now
    with runtime.engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO catalog_items (sku, name, category, price) "
                             "VALUES ('CONSISTENT-1', 'New item', 'consistency-test', 1)"))
    try:
        time.sleep(0.65)  # the listing's read is over a ttl old, the check's (if its own) is not
        listed = [c["category"] for c in client.get("/api/categories").get_json()["categories"]]
        submitted = submit_upload(client, categories="consistency-test")
        assert ("consistency-test" in listed) == (submitted.status_code == 202), (listed, submitted.get_json())
    finally:
        with runtime.engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM catalog_items WHERE sku = 'CONSISTENT-1'"))
