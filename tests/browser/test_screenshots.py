"""The three pages a new user sees (`/`, `/r/<token>` with results, `/docs`) at a phone's and a laptop's size:
nothing wider than the screen, no script or CSP error. With SEARCHJOBS_UPDATE_SCREENSHOTS=1 each is saved to
docs/screenshots/<page>-<width>x<height>.png (the README shows them), so they are refreshed on request only."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.browser.test_pages_browser import fill_form, watch_console
from tests.conftest import demo_image_bytes

pytestmark = pytest.mark.browser

SCREENSHOTS = Path(__file__).resolve().parent.parent.parent / "docs" / "screenshots"
SCREENS = {
    "390x844": {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True,
                "has_touch": True},
    "1280x900": {"viewport": {"width": 1280, "height": 900}},
}


@pytest.fixture
def result_path(live_server, new_page, tmp_path) -> str:
    """The path of a completed job's result page."""
    photo = tmp_path / "my-dress.png"
    photo.write_bytes(demo_image_bytes(2, "dress"))
    page = new_page()
    page.goto(live_server.url + "/")
    fill_form(page, photo)
    page.get_by_role("button", name="Find similar clothes").click()
    page.wait_for_url(re.compile(r"/r/[A-Za-z0-9_-]{43}$"))
    live_server.run_searches()
    return page.url.removeprefix(live_server.url)


@pytest.mark.parametrize("screen", list(SCREENS))
def test_the_first_pages_fit_the_screen(live_server, new_page, result_path, screen):
    width = SCREENS[screen]["viewport"]["width"]
    for name, path, ready in (("submit", "/", "#search-form"), ("result", result_path, ".product-card"),
                              ("docs", "/docs", ".opblock")):
        page = new_page(**SCREENS[screen])
        problems = watch_console(page)
        page.goto(live_server.url + path)
        page.wait_for_selector(ready, timeout=15000)
        page.wait_for_load_state("networkidle")  # catalog images and Swagger UI's fonts
        scroll_width = page.evaluate("document.documentElement.scrollWidth")
        assert scroll_width <= width, f"{name} is {scroll_width}px wide on a {width}px screen"
        assert problems == [], (name, problems)
        if os.environ.get("SEARCHJOBS_UPDATE_SCREENSHOTS"):
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOTS / f"{name}-{screen}.png"))
