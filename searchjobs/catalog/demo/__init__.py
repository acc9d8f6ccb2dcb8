"""Procedural demo catalog: plausible clothing items with drawn product images.

Everything here is derived from ``(seed, index)`` alone, so a given item is the
same no matter how many items are generated around it, on any machine.  The
images are flat "packshots": one light background, one silhouette per category
drawn with ``PIL.ImageDraw``, a named main colour and a pattern.  They exist so
the search pipeline can be demonstrated and benchmarked without real product
data; every item says so (``DEMO_LABEL``, ``attributes["demo"] = True``).

The package: this module assembles the catalog (categories, names, prices, colours, SKUs);
``drawing`` paints one packshot; ``garments`` holds the ten silhouettes.
"""

from __future__ import annotations

import decimal
import io
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from searchjobs.catalog.demo.drawing import PALETTE, DemoCatalogError, pick_secondary, render_item_image
from searchjobs.catalog.demo.garments import IMAGE_SIZE, STYLES

__all__ = [
    "CATEGORY_NAMING", "CURRENCY", "DEMO_CATEGORIES", "DEMO_LABEL", "IMAGE_SIZE", "PALETTE", "PATTERN_WORDS",
    "PRICE_RANGES", "SKU_PREFIX", "DemoCatalogError", "DemoItem", "generate_items", "item_and_image",
    "render_item_image",
]

# The ten demo categories, lower case; items are assigned round-robin over them.
DEMO_CATEGORIES: tuple[str, ...] = (
    "dress", "top", "skirt", "trousers", "jacket", "shoes", "bag", "hat", "coat", "scarf",
)
# Shown wherever demo data appears so nobody mistakes it for real stock.
DEMO_LABEL = "Demo catalog"
# Currency of every demo price.
CURRENCY = "EUR"
# Prefix of every demo SKU; real SKUs never start with it.
SKU_PREFIX = "DEMO"
# PNG zlib level: 3 is ~30% faster to encode than the default 6 for ~10% larger files.
PNG_COMPRESS_LEVEL = 3

# Pattern keys and the word they contribute to an item name ("" = not mentioned).
PATTERN_WORDS: dict[str, str] = {
    "solid": "",
    "striped": "Striped",
    "checked": "Checked",
    "dotted": "Polka-Dot",
    "floral": "Floral",
    "colour-block": "Colour-Block",
}
# Relative frequency of each pattern; plain items dominate real catalogs.
PATTERN_WEIGHTS: dict[str, float] = {
    "solid": 0.30, "striped": 0.18, "checked": 0.14, "dotted": 0.12, "floral": 0.13, "colour-block": 0.13,
}

# Per category: SKU code, style words (garments.STYLES), noun appended after the style ("" when the
# style is the noun).
CATEGORY_NAMING: dict[str, tuple[str, tuple[str, ...], str]] = {
    "dress": ("DRS", STYLES["dress"], "Dress"),
    "top": ("TOP", STYLES["top"], "Top"),
    "skirt": ("SKT", STYLES["skirt"], "Skirt"),
    "trousers": ("TRS", STYLES["trousers"], "Trousers"),
    "jacket": ("JKT", STYLES["jacket"], "Jacket"),
    "shoes": ("SHO", STYLES["shoes"], ""),
    "bag": ("BAG", STYLES["bag"], "Bag"),
    "hat": ("HAT", STYLES["hat"], "Hat"),
    "coat": ("COT", STYLES["coat"], "Coat"),
    "scarf": ("SCF", STYLES["scarf"], "Scarf"),
}

# Price range per category in EUR (low, high); drawn log-uniformly, then given a retail ending.
PRICE_RANGES: dict[str, tuple[float, float]] = {
    "dress": (29.0, 159.0),
    "top": (12.0, 59.0),
    "skirt": (19.0, 99.0),
    "trousers": (24.0, 129.0),
    "jacket": (39.0, 249.0),
    "shoes": (29.0, 189.0),
    "bag": (24.0, 299.0),
    "hat": (12.0, 69.0),
    "coat": (79.0, 399.0),
    "scarf": (9.0, 79.0),
}
# Retail price endings, in cents.
PRICE_ENDINGS = (95, 99, 0, 50)

@dataclass(frozen=True)
class DemoItem:
    sku: str
    name: str
    category: str
    price: decimal.Decimal
    currency: str
    image_png: bytes = field(repr=False)
    attributes: dict


def generate_items(size: int, seed: int = 0) -> Iterator[DemoItem]:
    """Yield ``size`` demo items, round-robin over ``DEMO_CATEGORIES``.

    Item ``i`` depends only on ``(seed, i)``: ``generate_items(10)`` is a prefix of
    ``generate_items(1000)`` for the same seed.
    """
    if size < 0:
        raise DemoCatalogError(f"size must be >= 0, got {size}")
    for index in range(size):
        yield item_and_image(index, seed)[0]


def item_and_image(index: int, seed: int = 0) -> tuple[DemoItem, Image.Image]:
    """Item ``index`` of the catalog of ``seed``, and its image before PNG encoding (describing it
    spares decoding the PNG: the encoding is lossless)."""
    # One independent stream per item keeps items stable regardless of `size`.
    rng = np.random.default_rng([seed, index])
    category = DEMO_CATEGORIES[index % len(DEMO_CATEGORIES)]
    code, styles, noun = CATEGORY_NAMING[category]
    colour_names = list(PALETTE)
    colour = colour_names[int(rng.integers(len(colour_names)))]
    patterns = list(PATTERN_WEIGHTS)
    weights = np.array([PATTERN_WEIGHTS[p] for p in patterns])
    pattern = patterns[int(rng.choice(len(patterns), p=weights / weights.sum()))]
    style = styles[int(rng.integers(len(styles)))]
    secondary = pick_secondary(PALETTE[colour], rng)

    image = render_item_image(category, colour, pattern, rng, secondary=secondary, style=style)
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=PNG_COMPRESS_LEVEL)

    words = [colour.title(), PATTERN_WORDS[pattern], style, noun]
    name = " ".join(w for w in words if w)
    attributes = {
        "colour": colour,
        "secondary_colour": secondary if pattern != "solid" else None,
        "pattern": pattern,
        "style": style.lower(),
        "demo": True,
    }
    item = DemoItem(
        sku=f"{SKU_PREFIX}-{code}-{index:06d}",
        name=name,
        category=category,
        price=_price(category, rng),
        currency=CURRENCY,
        image_png=buf.getvalue(),
        attributes=attributes,
    )
    return item, image


def _price(category: str, rng: np.random.Generator) -> decimal.Decimal:
    low, high = PRICE_RANGES[category]
    euros = int(np.exp(rng.uniform(np.log(low), np.log(high))))
    cents = PRICE_ENDINGS[int(rng.integers(len(PRICE_ENDINGS)))]
    return decimal.Decimal(f"{euros}.{cents:02d}")
