"""/docs renders /openapi.json with Swagger UI in a real browser, under the site's CSP, on a desktop and on a
phone-sized screen."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from searchjobs.web.openapi import DOCUMENT

pytestmark = pytest.mark.browser

PHONE = {"viewport": {"width": 375, "height": 740}, "device_scale_factor": 2, "is_mobile": True,
         "has_touch": True}


def operation_count() -> int:
    return sum(1 for item in DOCUMENT["paths"].values() for key in item if key != "parameters")


def open_docs(new_page, live_server, **context):
    page = new_page(**context)
    problems = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto(live_server.url + "/docs")
    page.wait_for_selector(".opblock", timeout=15000)
    return page, problems


@pytest.mark.parametrize("screen", ["desktop", "phone"])
def test_docs_page_renders_every_operation(live_server, new_page, screen):
    page, problems = open_docs(new_page, live_server, **(PHONE if screen == "phone" else {}))
    assert page.locator(".site-header .brand").is_visible(), "the site's own header"
    assert page.locator(".opblock").count() == operation_count()
    submit = page.locator("#operations-jobs-submitJob")
    submit.locator(".opblock-summary").first.click()
    # Swagger UI renders the opened operation after the click returns; wait for it rather than look once
    expect(submit.get_by_text("multipart/form-data").first).to_be_visible(timeout=10000)
    # no CSP violation (Chromium reports each as a console error) and no script error
    assert problems == [], problems
    if screen == "phone":
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 375, f"the page is {width}px wide on a 375px screen"
