"""The colours the search saw: a completed job's results carry them, the API returns them, the page shows them."""

from __future__ import annotations

import io
import re

from PIL import Image, ImageDraw

from tests.integration.test_pages import assert_no_inline_script, assert_page_headers

HEX = re.compile(r"#[0-9a-f]{6}")


def red_dress_on_a_grey_wall() -> bytes:
    image = Image.new("RGB", (360, 480), (150, 150, 146))
    ImageDraw.Draw(image).polygon([(140, 90), (220, 90), (270, 400), (90, 400)], fill=(200, 30, 40))
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=85)
    return buf.getvalue()


def submit_photo(client) -> str:
    data = {"categories": "dress", "image": (io.BytesIO(red_dress_on_a_grey_wall()), "photo.jpg")}
    body = client.post("/api/search-jobs", data=data, content_type="multipart/form-data").get_json()
    return body["result_url"].rsplit("/r/", 1)[1]


def test_completed_results_carry_the_query_colours_and_the_page_shows_them(client, runtime, run_jobs):
    token = submit_photo(client)
    run_jobs(["searches"])

    results = client.get(f"/api/results/{token}").get_json()["results"]
    # The existing keys stay; the new one sits beside them.
    assert {"categories", "catalog_version", "took_ms", "query_colours"} <= set(results)
    colours = results["query_colours"]
    assert 1 <= len(colours) <= 3
    assert all(HEX.fullmatch(c["hex"]) and c["name"] and 0 < c["share"] <= 1 for c in colours)
    assert colours[0]["name"] == "red" and colours[0]["share"] >= 0.7
    # Every hit still carries its score (shown on the page as "% match").
    assert all(0 <= hit["score"] <= 1 for hit in results["categories"]["dress"])

    response = client.get(f"/r/{token}")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert_page_headers(response)
    assert_no_inline_script(html)
    assert ' style="' not in html, "an inline style attribute breaks the CSP"
    assert "Colours we saw in your photo" in html
    # Each swatch: a chip the screen reader skips, and the colour in words with its share.
    for colour in colours:
        assert f'fill="{colour["hex"]}"' in html
        assert re.search(rf'<span class="swatch-name">{colour["name"]}</span>\s*'
                         rf'<span class="swatch-share">{round(colour["share"] * 100)}%</span>', html)
    assert html.count('class="swatch-chip"') == len(colours) and 'aria-hidden="true"' in html
    assert re.search(r'<p class="product-score">\d{1,3}% match</p>', html)
