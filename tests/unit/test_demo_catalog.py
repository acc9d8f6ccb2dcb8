"""The procedural demo catalog: deterministic, evenly spread, plausible items with PNG images."""

from __future__ import annotations

import decimal
import io
import re
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from searchjobs.catalog import demo
from searchjobs.catalog.demo import DEMO_CATEGORIES, DemoItem, generate_items
from searchjobs.errors import SearchJobsError

SIZE = 120  # 12 per category
SEED = 5
SKU_PATTERN = re.compile(r"^DEMO-[A-Z]{3}-\d{6}$")


@pytest.fixture(scope="module")
def items() -> list[DemoItem]:
    return list(generate_items(SIZE, seed=SEED))


def test_categories_are_ten_lower_case_clothing_names():
    assert len(DEMO_CATEGORIES) == 10 == len(set(DEMO_CATEGORIES))
    assert all(c == c.lower() and c.isalpha() for c in DEMO_CATEGORIES)
    assert {"dress", "trousers", "shoes", "bag"} <= set(DEMO_CATEGORIES)
    assert demo.DEMO_LABEL == "Demo catalog"


def test_deterministic_for_a_seed(items):
    again = list(generate_items(20, seed=SEED))
    # Item i depends only on (seed, i): a shorter run is a prefix of a longer one.
    assert again == items[:20]
    other_seed = list(generate_items(20, seed=SEED + 1))
    assert [i.image_png for i in other_seed] != [i.image_png for i in again]
    assert [i.sku for i in other_seed] == [i.sku for i in again]  # skus are positional


def test_skus_are_unique_and_well_formed(items):
    skus = [item.sku for item in items]
    assert len(set(skus)) == len(skus)
    assert all(SKU_PATTERN.match(sku) for sku in skus)
    assert items[0].sku == "DEMO-DRS-000000"


def test_categories_are_spread_evenly(items):
    counts = Counter(item.category for item in items)
    assert set(counts) == set(DEMO_CATEGORIES)
    assert set(counts.values()) == {SIZE // len(DEMO_CATEGORIES)}
    # Any prefix is as even as it can be.
    prefix = Counter(item.category for item in items[:25])
    assert max(prefix.values()) - min(prefix.values()) <= 1


def test_prices_are_positive_realistic_and_in_cents(items):
    for item in items:
        assert isinstance(item.price, decimal.Decimal)
        assert item.price.as_tuple().exponent == -2
        low, high = demo.PRICE_RANGES[item.category]
        assert 0 < low <= item.price < high + 1
        assert item.currency == "EUR"
    by_category = {c: [i.price for i in items if i.category == c] for c in DEMO_CATEGORIES}
    # Coats cost more than scarves on average, as in a real shop.
    assert sum(by_category["coat"]) > sum(by_category["scarf"])


def test_names_and_attributes_describe_the_item(items):
    for item in items:
        colour = item.attributes["colour"]
        assert colour in demo.PALETTE
        assert item.attributes["pattern"] in demo.PATTERN_WORDS
        assert item.attributes["demo"] is True
        assert item.name.startswith(colour.title() + " ")
        assert len(item.name.split()) >= 2
    assert len({item.name for item in items}) > SIZE * 0.8  # names vary


def test_images_are_pngs_of_the_expected_size(items):
    for item in items[:30]:
        assert item.image_png.startswith(b"\x89PNG\r\n\x1a\n")
        with Image.open(io.BytesIO(item.image_png)) as image:
            assert image.format == "PNG"
            assert image.size == (demo.IMAGE_SIZE, demo.IMAGE_SIZE)
            assert image.mode == "RGB"
            pixels = np.asarray(image)
        # A light backdrop at the corners and a drawn (non-background) item in the middle.
        assert pixels[2, 2].min() > 200
        assert (np.abs(pixels.astype(int) - pixels[2, 2].astype(int)).max(axis=-1) > 40).mean() > 0.05


def test_items_of_one_category_differ(items):
    dresses = [item.image_png for item in items if item.category == "dress"]
    assert len(set(dresses)) == len(dresses)


def test_render_item_image_accepts_names_and_rgb_and_rejects_unknowns():
    rng = np.random.default_rng(0)
    for pattern in demo.PATTERN_WORDS:
        image = demo.render_item_image("bag", "navy", pattern, rng)
        assert image.size == (demo.IMAGE_SIZE, demo.IMAGE_SIZE)
    assert demo.render_item_image("hat", (200, 30, 40), "striped", rng).mode == "RGB"
    for args in (("cape", "navy", "solid"), ("hat", "octarine", "solid"), ("hat", "navy", "paisley"),
                 ("hat", (300, 0, 0), "solid")):
        with pytest.raises(demo.DemoCatalogError) as info:
            demo.render_item_image(*args, rng)
        assert isinstance(info.value, SearchJobsError)


def test_negative_size_is_rejected():
    with pytest.raises(demo.DemoCatalogError):
        list(generate_items(-1))
