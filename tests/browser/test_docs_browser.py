"""/docs renders the operations of /openapi.json in a real browser, under the strict CSP."""

from __future__ import annotations

import pytest

from searchjobs.web.openapi import DOCUMENT

pytestmark = pytest.mark.browser


def test_docs_page_lists_every_operation(live_server, new_page):
    page = new_page()
    problems = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto(live_server.url + "/docs")
    page.wait_for_selector("details.operation")
    operations = sum(1 for item in DOCUMENT["paths"].values() for key in item if key != "parameters")
    assert page.locator("details.operation").count() == operations
    assert page.locator("#error-codes tbody tr").count() == len(
        DOCUMENT["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["code"]["enum"])
    page.locator("details#submitJob > summary").click()
    assert page.locator("details#submitJob").get_by_text("multipart/form-data", exact=True).is_visible()
    assert problems == [], problems
