"""The pages in real headless Chromium: submit a photo, watch the progress, read the results on a phone."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.conftest import demo_image_bytes

pytestmark = pytest.mark.browser

PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True, "has_touch": True}

# Reports every value the progress bar takes, on every page load (the page itself has no test hooks).
WATCH_PROGRESS = """
document.addEventListener("DOMContentLoaded", () => {
  const bar = document.getElementById("progress");
  if (!bar) return;
  new MutationObserver(() => window.recordProgress(Number(bar.value)))
    .observe(bar, {attributes: true, attributeFilter: ["value"]});
});
"""


@pytest.fixture
def photo(tmp_path) -> Path:
    path = tmp_path / "my-dress.png"
    path.write_bytes(demo_image_bytes(2, "dress"))
    return path


def watch_console(page) -> list[str]:
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    return problems


def fill_form(page, photo: Path, phone: str | None = None):
    page.set_input_files("#photo", str(photo))
    page.get_by_label("Dress").check()
    page.get_by_label("Shoes").check()
    if phone:
        page.get_by_label("Country").select_option("33")
        page.get_by_label("Mobile number").fill(phone)


def test_submit_watch_progress_and_land_on_results(live_server, new_page, photo):
    page = new_page()
    problems = watch_console(page)
    seen: list[float] = []
    page.expose_function("recordProgress", lambda value: seen.append(value))
    page.add_init_script(WATCH_PROGRESS)

    page.goto(live_server.url + "/")
    assert page.locator("h1").inner_text() == "Find clothes like your photo"
    fill_form(page, photo, phone="06 12 34 56 78")
    expect(page.locator("#photo-preview")).to_be_visible()  # drawn once the browser has read the file
    page.get_by_role("button", name="Find similar clothes").click()

    # the job page is the result link; nobody has run the job yet
    page.wait_for_url(re.compile(r"/r/[A-Za-z0-9_-]{43}$"))
    bar = page.locator("progress#progress")
    assert bar.get_attribute("value") == "0"
    assert page.locator("#stage-text").inner_text() == "Waiting for a free worker"
    assert page.get_by_text("You can close this page; we'll text you a link").is_visible()
    assert "12 34 56 78" not in page.content()

    live_server.run_searches()  # the page follows over SSE, then reloads into the results
    page.locator(".product-card").first.wait_for(timeout=15000)
    assert page.locator("h1").inner_text() == "Your results are ready"
    assert page.locator("h2", has_text="Dress").is_visible() and page.locator("h2", has_text="Shoes").is_visible()
    assert page.locator(".product-card").count() == 24

    # the bar moved through the stages: several distinct values between 0 and 100, never backwards
    assert seen == sorted(seen) and seen[-1] == 100
    assert len({v for v in seen if 0 < v < 100}) >= 3, seen
    assert problems == []  # no CSP violation, no script error


def test_result_page_on_a_phone(live_server, new_page, photo):
    page = new_page()
    page.goto(live_server.url + "/")
    fill_form(page, photo)
    page.get_by_role("button", name="Find similar clothes").click()
    page.wait_for_url(re.compile(r"/r/[A-Za-z0-9_-]{43}$"))
    result_url = page.url
    live_server.run_searches()

    phone = new_page(**PHONE)
    problems = watch_console(phone)
    phone.goto(result_url)
    cards = phone.locator(".product-card")
    cards.first.wait_for()
    assert cards.count() == 24
    for card in (cards.nth(0), cards.nth(1)):
        image = card.locator("img")
        assert image.get_attribute("alt")
        card.scroll_into_view_if_needed()
        phone.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
        assert card.locator(".product-name").inner_text().strip()
        assert re.fullmatch(r"€\d+\.\d\d", card.locator(".product-price").inner_text())
        assert re.fullmatch(r"\d{1,3}% match", card.locator(".product-score").inner_text())
        assert card.locator(".badge").inner_text() == "Demo catalog"
    # the colours the search saw: words beside each chip, the chip painted by its SVG fill (allowed by the CSP)
    swatches = phone.locator(".swatch")
    assert 1 <= swatches.count() <= 3
    for index in range(swatches.count()):
        swatch = swatches.nth(index)
        assert swatch.locator(".swatch-name").inner_text().strip()
        assert re.fullmatch(r"\d{1,3}%", swatch.locator(".swatch-share").inner_text())
        rect = swatch.locator("rect")
        red, green, blue = (int(rect.get_attribute("fill")[i:i + 2], 16) for i in (1, 3, 5))
        assert phone.evaluate("r => getComputedStyle(r).fill", rect.element_handle()) == f"rgb({red}, {green}, {blue})"
    # two cards side by side, nothing wider than the screen
    first, second = cards.nth(0).bounding_box(), cards.nth(1).bounding_box()
    assert first["y"] == second["y"] and first["width"] < 195 and second["x"] + second["width"] <= 390
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390
    assert problems == []


def test_inline_errors_from_the_page_and_from_the_api(live_server, new_page, photo):
    page = new_page()
    page.goto(live_server.url + "/")
    # keyboard only: reach the button and press it with nothing filled in
    page.get_by_role("button", name="Find similar clothes").focus()
    page.keyboard.press("Enter")
    assert page.locator("#image-error").inner_text() == "Take or choose a photo first."
    assert page.locator("#categories-error").inner_text() == "Pick at least one category."
    assert page.evaluate("document.activeElement.id") == "camera"  # focus on the first problem

    # a landline passes the page's checks; the API's answer lands next to the phone field
    fill_form(page, photo)
    page.get_by_label("Mobile number").fill("+44 20 7946 0000")
    page.get_by_role("button", name="Find similar clothes").click()
    error = page.locator("#phone_number-error")
    error.wait_for()
    assert "mobile" in error.inner_text()
    assert page.locator("#phone_number").get_attribute("aria-invalid") == "true"
    assert "/r/" not in page.url


def test_the_phone_hint_follows_the_chosen_country(live_server, new_page):
    page = new_page()
    problems = watch_console(page)
    page.goto(live_server.url + "/")
    hint = page.locator("#phone-example")
    assert hint.inner_text() == "Choose the country of your number, or type it with + and its country code."
    page.get_by_label("Country").select_option("33")
    assert hint.inner_text() == "For example 06 12 34 56 78."
    assert page.get_by_label("Mobile number").get_attribute("placeholder") == "06 12 34 56 78"
    page.get_by_label("Country").select_option("44")
    assert hint.inner_text() == "For example 07400 123456."
    # a number the page cannot read is answered with the chosen country's example
    page.get_by_label("Country").select_option("49")
    page.get_by_label("Mobile number").fill("call me")
    page.get_by_role("button", name="Find similar clothes").click()
    assert page.locator("#phone_number-error").inner_text() == "Enter a mobile number using digits, for example 01512 3456789."
    # typing again clears it
    page.get_by_label("Mobile number").fill("01512 3456789")
    assert page.locator("#phone_number-error").is_hidden()
    assert problems == []


def test_an_error_goes_away_once_it_is_fixed(live_server, new_page, photo):
    page = new_page()
    page.goto(live_server.url + "/")
    page.set_input_files("#photo", str(photo))
    page.get_by_label("Mobile number").fill("06 12 34 56 78")
    page.get_by_role("button", name="Find similar clothes").click()
    categories_error, country_error = page.locator("#categories-error"), page.locator("#country_code-error")
    assert categories_error.inner_text() == "Pick at least one category."
    assert country_error.inner_text().startswith("Choose the country of this number")
    page.get_by_label("Dress").check()
    assert categories_error.is_hidden()
    page.get_by_label("Country").select_option("33")
    assert country_error.is_hidden() and page.locator("#country_code").get_attribute("aria-invalid") is None


def test_a_photo_over_the_limit_is_refused_with_its_size(live_server, new_page, tmp_path):
    """The page's own check, and the server's answer when the page's limit is not the server's (a page served
    before the limit changed): both say how large the photo is and what the limit is."""
    big = tmp_path / "big.png"
    big.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * (int(11.9 * 1048576) - 8))
    page = new_page()
    page.goto(live_server.url + "/")
    page.set_input_files("#photo", str(big))
    page.get_by_label("Dress").check()
    page.get_by_role("button", name="Find similar clothes").click()
    error = page.locator("#image-error")
    assert error.inner_text() == "This photo is 11.9 MB; the limit is 10 MB."

    page.locator("#search-form").evaluate("form => { form.dataset.maxBytes = String(50 * 1048576); }")
    with page.expect_response(lambda r: r.url.endswith("/api/search-jobs")) as answer:
        page.get_by_role("button", name="Find similar clothes").click()
    assert answer.value.status == 413
    page.wait_for_function("() => document.getElementById('image-error').textContent.includes('the limit')")
    assert error.inner_text() == "This photo is 11.9 MB; the limit is 10 MB."
    assert "/r/" not in page.url
