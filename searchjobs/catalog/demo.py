"""Procedural demo catalog: plausible clothing items with drawn product images.

Everything here is derived from ``(seed, index)`` alone, so a given item is the
same no matter how many items are generated around it, on any machine.  The
images are flat "packshots": one light background, one silhouette per category
drawn with ``PIL.ImageDraw``, a named main colour and a pattern.  They exist so
the search pipeline can be demonstrated and benchmarked without real product
data; every item says so (``DEMO_LABEL``, ``attributes["demo"] = True``).
"""

from __future__ import annotations

import decimal
import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from searchjobs.errors import SearchJobsError

# The ten demo categories, lower case; items are assigned round-robin over them.
DEMO_CATEGORIES: tuple[str, ...] = (
    "dress", "top", "skirt", "trousers", "jacket", "shoes", "bag", "hat", "coat", "scarf",
)
# Shown wherever demo data appears so nobody mistakes it for real stock.
DEMO_LABEL = "Demo catalog"
# Edge length of the square product images, in pixels.
IMAGE_SIZE = 256
# Currency of every demo price.
CURRENCY = "EUR"
# Prefix of every demo SKU; real SKUs never start with it.
SKU_PREFIX = "DEMO"
# Largest rotation of a silhouette, in degrees either way.
MAX_ROTATION_DEG = 4.0
# Largest per-channel jitter applied to a named colour, so equal names still differ a little.
COLOUR_JITTER = 10
# Gaussian blur radius that anti-aliases the hard-edged silhouette mask.
MASK_SOFTEN_RADIUS = 0.8
# Blur radius that grows the silhouette into a thin dark rim.
RIM_RADIUS = 1.0
# PNG zlib level: 3 is ~30% faster to encode than the default 6 for ~10% larger files.
PNG_COMPRESS_LEVEL = 3

# Named palette: name -> sRGB.  Names are what users see in item names.
PALETTE: dict[str, tuple[int, int, int]] = {
    "black": (28, 28, 30),
    "white": (236, 236, 232),
    "grey": (128, 128, 132),
    "navy": (28, 40, 88),
    "blue": (40, 90, 190),
    "sky blue": (120, 180, 230),
    "teal": (20, 128, 128),
    "green": (40, 140, 70),
    "olive": (110, 112, 50),
    "khaki": (190, 175, 125),
    "camel": (190, 140, 80),
    "brown": (100, 60, 35),
    "burgundy": (115, 20, 45),
    "red": (200, 30, 40),
    "pink": (240, 150, 180),
    "coral": (245, 120, 95),
    "mustard": (215, 170, 40),
    "purple": (100, 50, 140),
    "lilac": (190, 160, 220),
}

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

# Per category: SKU code, style words, noun appended after the style ("" when the style is the noun).
CATEGORY_NAMING: dict[str, tuple[str, tuple[str, ...], str]] = {
    "dress": ("DRS", ("Mini", "Midi", "Maxi", "A-line", "Wrap", "Shift", "Slip"), "Dress"),
    "top": ("TOP", ("Crew-Neck", "V-Neck", "Boxy", "Cropped", "Long-Sleeve", "Relaxed"), "Top"),
    "skirt": ("SKT", ("Mini", "Midi", "Pleated", "A-line", "Pencil", "Wrap"), "Skirt"),
    "trousers": ("TRS", ("Straight-Leg", "Wide-Leg", "Slim", "Tailored", "Cropped", "Cargo"), "Trousers"),
    "jacket": ("JKT", ("Denim", "Bomber", "Biker", "Cropped", "Utility", "Tailored"), "Jacket"),
    "shoes": ("SHO", ("Sneakers", "Loafers", "Ankle Boots", "Ballet Flats", "Chelsea Boots", "Derby Shoes"), ""),
    "bag": ("BAG", ("Tote", "Crossbody", "Shoulder", "Bucket", "Satchel", "Top-Handle"), "Bag"),
    "hat": ("HAT", ("Fedora", "Bucket", "Sun", "Beanie", "Baseball", "Panama"), "Hat"),
    "coat": ("COT", ("Trench", "Wool", "Longline", "Double-Breasted", "Belted", "Car"), "Coat"),
    "scarf": ("SCF", ("Knit", "Silk", "Wool", "Oversized", "Cashmere", "Blanket"), "Scarf"),
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

# Light, plain backgrounds (studio white, warm white, pale grey).
BACKGROUNDS: tuple[tuple[int, int, int], ...] = ((246, 246, 244), (244, 241, 235), (236, 237, 239))


class DemoCatalogError(SearchJobsError):
    """A demo item was requested with an unknown category, colour or pattern."""

    code = "demo_catalog_error"


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
        yield _make_item(index, seed)


def _make_item(index: int, seed: int) -> DemoItem:
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
    secondary = _pick_secondary(PALETTE[colour], rng)

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
    return DemoItem(
        sku=f"{SKU_PREFIX}-{code}-{index:06d}",
        name=name,
        category=category,
        price=_price(category, rng),
        currency=CURRENCY,
        image_png=buf.getvalue(),
        attributes=attributes,
    )


def _pick_secondary(main_rgb: Sequence[int], rng: np.random.Generator) -> str:
    # Pick a secondary colour that is visibly different from the main one.
    main = np.array(main_rgb, dtype=float)
    candidates = [n for n, rgb in PALETTE.items() if np.abs(np.array(rgb) - main).sum() > 120]
    return candidates[int(rng.integers(len(candidates)))]


def _price(category: str, rng: np.random.Generator) -> decimal.Decimal:
    low, high = PRICE_RANGES[category]
    euros = int(np.exp(rng.uniform(np.log(low), np.log(high))))
    cents = PRICE_ENDINGS[int(rng.integers(len(PRICE_ENDINGS)))]
    return decimal.Decimal(f"{euros}.{cents:02d}")


# ---------------------------------------------------------------------------
# Drawing
# ---------------------------------------------------------------------------

RGB = tuple[int, int, int]


def render_item_image(
    category: str,
    colour: str | Sequence[int],
    pattern: str,
    rng: np.random.Generator,
    *,
    secondary: str | Sequence[int] | None = None,
    style: str | None = None,
) -> Image.Image:
    """Draw one ``IMAGE_SIZE`` square RGB packshot.

    ``colour``/``secondary`` are palette names or RGB triples; a missing
    ``secondary`` or ``style`` is drawn from ``rng``.  Proportions, rotation and
    pattern geometry also come from ``rng``, so equal arguments give different
    but recognisably similar items.
    """
    if category not in CATEGORY_NAMING:
        raise DemoCatalogError(f"unknown demo category {category!r}")
    if pattern not in PATTERN_WORDS:
        raise DemoCatalogError(f"unknown demo pattern {pattern!r}")
    base_rgb = _to_rgb(colour)
    if secondary is None:
        secondary = _pick_secondary(base_rgb, rng)
    if style is None:
        styles = CATEGORY_NAMING[category][1]
        style = styles[int(rng.integers(len(styles)))]
    main_rgb = _jitter(base_rgb, rng)
    sec_rgb = _jitter(_to_rgb(secondary), rng)
    s = IMAGE_SIZE

    background = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
    texture = _pattern_texture(pattern, main_rgb, sec_rgb, rng)
    mask = Image.new("L", (s, s), 0)
    # Silhouette goes into `mask`; seams, buttons and bands are drawn on `texture`.
    _SHAPES[category](ImageDraw.Draw(mask), ImageDraw.Draw(texture), main_rgb, sec_rgb, style, rng)

    # Rotate garment and mask together, once, as one RGBA layer.
    texture.putalpha(mask.filter(ImageFilter.GaussianBlur(MASK_SOFTEN_RADIUS)))
    angle = float(rng.uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG))
    layer = texture.rotate(angle, resample=Image.Resampling.BILINEAR)
    alpha = layer.getchannel("A")
    # A thin darker rim (a slightly grown silhouette underneath) keeps light garments
    # visible on a light background.
    rim = alpha.filter(ImageFilter.GaussianBlur(RIM_RADIUS)).point(lambda v: min(255, v * 3))
    out = Image.new("RGB", (s, s), background)
    out.paste(_shade(main_rgb, 0.55), (0, 0, s, s), rim)
    out.paste(layer.convert("RGB"), (0, 0), alpha)
    return out


def _to_rgb(colour: str | Sequence[int]) -> RGB:
    if isinstance(colour, str):
        try:
            return PALETTE[colour]
        except KeyError:
            raise DemoCatalogError(f"unknown demo colour {colour!r}") from None
    rgb = tuple(int(c) for c in colour)
    if len(rgb) != 3 or not all(0 <= c <= 255 for c in rgb):
        raise DemoCatalogError(f"colour must be a palette name or an RGB triple, got {colour!r}")
    return rgb  # type: ignore[return-value]


def _jitter(rgb: RGB, rng: np.random.Generator) -> RGB:
    delta = rng.integers(-COLOUR_JITTER, COLOUR_JITTER + 1, size=3)
    return tuple(int(v) for v in np.clip(np.array(rgb) + delta, 0, 255))  # type: ignore[return-value]


def _shade(rgb: RGB, factor: float) -> RGB:
    return tuple(int(round(c * factor)) for c in rgb)  # type: ignore[return-value]


def _mix(a: RGB, b: RGB, t: float) -> RGB:
    return tuple(int(round(x * (1 - t) + y * t)) for x, y in zip(a, b, strict=True))  # type: ignore[return-value]


# Pixel coordinate grids for pattern maths, built once.
_GRID_Y, _GRID_X = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE].astype(np.float32)


def _pattern_texture(pattern: str, main: RGB, sec: RGB, rng: np.random.Generator) -> Image.Image:
    """A full-canvas texture; the silhouette mask later cuts the garment out of it."""
    s = IMAGE_SIZE
    yy, xx = _GRID_Y, _GRID_X
    # 0 = main colour, 1 = secondary colour, 0.5 = even mix (check crossings).
    amount = np.zeros((s, s), dtype=np.float32)
    if pattern == "striped":
        period = rng.uniform(10, 30)
        width = period * rng.uniform(0.3, 0.6)
        direction = int(rng.integers(3))
        coord = (yy, xx, (xx + yy) * 0.7071)[direction]
        amount[(coord + rng.uniform(0, period)) % period < width] = 1.0
    elif pattern == "checked":
        period = rng.uniform(14, 34)
        width = period * rng.uniform(0.35, 0.55)
        rows = (yy + rng.uniform(0, period)) % period < width
        cols = (xx + rng.uniform(0, period)) % period < width
        amount = 0.5 * rows + 0.5 * cols
    elif pattern == "dotted":
        period = rng.uniform(12, 28)
        radius = period * rng.uniform(0.15, 0.3)
        row = np.floor(yy / period)
        # Every other row shifts by half a period, like printed polka dots.
        dx = (xx + (row % 2) * period / 2) % period - period / 2
        dy = yy % period - period / 2
        amount[dx * dx + dy * dy < radius * radius] = 1.0
    elif pattern == "colour-block":
        cut = rng.uniform(0.35, 0.65) * s
        if rng.random() < 0.5:
            amount[yy > cut] = 1.0
        else:
            amount[yy - (xx - s / 2) * rng.uniform(-0.6, 0.6) > cut] = 1.0
    # Only three mix levels occur, so index a 3-entry colour table instead of blending per pixel.
    table = np.array([main, _mix(main, sec, 0.5), sec], dtype=np.uint8)
    texture = Image.fromarray(table[np.rint(amount * 2).astype(np.intp)])
    if pattern == "floral":
        _draw_flowers(ImageDraw.Draw(texture), main, sec, rng)
    return texture


def _draw_flowers(draw: ImageDraw.ImageDraw, main: RGB, sec: RGB, rng: np.random.Generator) -> None:
    # Five-petal blobs scattered over the canvas, with a mixed-colour centre.
    centre_colour = _mix(sec, main, 0.5)
    petal = rng.uniform(4, 9)
    for _ in range(int(rng.integers(18, 40))):
        cx, cy = rng.uniform(0, IMAGE_SIZE, size=2)
        turn = rng.uniform(0, 2 * np.pi)
        for k in range(5):
            ang = turn + k * 2 * np.pi / 5
            px, py = cx + petal * np.cos(ang), cy + petal * np.sin(ang)
            draw.ellipse((px - petal, py - petal, px + petal, py + petal), fill=sec)
        draw.ellipse((cx - petal * 0.6, cy - petal * 0.6, cx + petal * 0.6, cy + petal * 0.6), fill=centre_colour)


def _u(rng: np.random.Generator, low: float, high: float) -> float:
    return float(rng.uniform(low, high))


# Each shape function draws the silhouette into `m` (mask, fill 255) and details into `t` (texture).
C = IMAGE_SIZE / 2  # horizontal centre line


def _dress(m, t, main, sec, style, rng):
    top = _u(rng, 28, 40)
    shoulder = _u(rng, 26, 38)
    waist_y = _u(rng, 92, 112)
    waist = _u(rng, 18, 26)
    hem_y = {"Mini": _u(rng, 160, 180), "Maxi": _u(rng, 225, 240)}.get(style, _u(rng, 190, 215))
    hem = {"Shift": _u(rng, 38, 50), "Slip": _u(rng, 40, 55)}.get(style, _u(rng, 55, 92))
    if style in ("Shift", "Slip"):
        waist = max(waist, hem - 12)
    m.polygon([(C - shoulder, top), (C + shoulder, top), (C + waist, waist_y), (C - waist, waist_y)], fill=255)
    m.polygon([(C - waist, waist_y - 1), (C + waist, waist_y - 1), (C + hem, hem_y), (C - hem, hem_y)], fill=255)
    # Rounded hem and a scooped neckline.
    m.chord((C - hem, hem_y - 12, C + hem, hem_y + 12), 0, 180, fill=255)
    neck = shoulder * _u(rng, 0.35, 0.6)
    m.chord((C - neck, top - neck * 0.8, C + neck, top + neck * 0.9), 0, 180, fill=0)
    if rng.random() < 0.5:  # short sleeves
        sl = _u(rng, 14, 22)
        m.polygon([(C - shoulder, top), (C - shoulder - sl, top + sl * 1.2), (C - shoulder + 4, top + sl * 1.6)], fill=255)
        m.polygon([(C + shoulder, top), (C + shoulder + sl, top + sl * 1.2), (C + shoulder - 4, top + sl * 1.6)], fill=255)
    t.line([(C - waist, waist_y), (C + waist, waist_y)], fill=_shade(main, 0.7), width=2)
    if style == "Wrap":
        t.line([(C - shoulder * 0.4, top), (C + waist, waist_y + 30)], fill=_shade(main, 0.7), width=2)


def _top(m, t, main, sec, style, rng):
    top = _u(rng, 45, 60)
    half = _u(rng, 44, 62) * (1.15 if style == "Boxy" else 1.0)
    hem_y = _u(rng, 150, 170) if style == "Cropped" else _u(rng, 185, 215)
    m.rectangle((C - half, top, C + half, hem_y), fill=255)
    long_sleeve = style == "Long-Sleeve" or rng.random() < 0.25
    reach = _u(rng, 110, 150) if long_sleeve else _u(rng, 35, 55)
    drop = _u(rng, 26, 36)
    for sgn in (-1, 1):
        x0 = C + sgn * half
        m.polygon([(x0, top), (x0 + sgn * reach * 0.45, top + reach * 0.9),
                   (x0 + sgn * reach * 0.45 - sgn * drop * 0.9, top + reach * 0.9 + drop * 0.4), (x0, top + drop * 1.6)],
                  fill=255)
    neck = _u(rng, 16, 26)
    if style == "V-Neck":
        m.polygon([(C - neck, top - 1), (C + neck, top - 1), (C, top + neck * 2.0)], fill=0)
    else:
        m.chord((C - neck, top - neck * 0.7, C + neck, top + neck * 0.8), 0, 180, fill=0)
    t.line([(C - half, hem_y - 8), (C + half, hem_y - 8)], fill=_shade(main, 0.8), width=1)


def _skirt(m, t, main, sec, style, rng):
    top = _u(rng, 48, 64)
    waist = _u(rng, 40, 54)
    hem_y = {"Mini": _u(rng, 150, 175), "Midi": _u(rng, 205, 230)}.get(style, _u(rng, 180, 215))
    hem = waist + (_u(rng, 4, 12) if style == "Pencil" else _u(rng, 22, 55))
    m.rectangle((C - waist, top, C + waist, top + 12), fill=255)
    m.polygon([(C - waist, top + 11), (C + waist, top + 11), (C + hem, hem_y), (C - hem, hem_y)], fill=255)
    t.rectangle((C - waist, top, C + waist, top + 11), fill=_shade(main, 0.75))
    if style == "Pleated":
        for k in range(-4, 5):
            t.line([(C + k * waist / 5, top + 12), (C + k * hem / 5, hem_y)], fill=_shade(main, 0.75), width=1)
    elif style == "Wrap":
        t.line([(C + waist * 0.6, top + 12), (C - hem * 0.2, hem_y)], fill=_shade(main, 0.7), width=2)


def _trousers(m, t, main, sec, style, rng):
    top = _u(rng, 26, 40)
    waist = _u(rng, 44, 56)
    crotch_y = top + _u(rng, 62, 78)
    ankle_y = _u(rng, 195, 212) if style == "Cropped" else _u(rng, 228, 246)
    leg = {"Wide-Leg": _u(rng, 44, 54), "Slim": _u(rng, 24, 30)}.get(style, _u(rng, 32, 42))
    flare = {"Wide-Leg": 10.0, "Slim": -2.0}.get(style, 0.0)
    m.rectangle((C - waist, top, C + waist, crotch_y), fill=255)
    for sgn in (-1, 1):
        outer_top, inner_top = C + sgn * waist, C + sgn * 2
        outer_bot = C + sgn * (4 + leg + flare + _u(rng, -2, 2))
        inner_bot = C + sgn * _u(rng, 5, 9)
        m.polygon([(outer_top, top), (inner_top, crotch_y), (inner_bot, ankle_y), (outer_bot, ankle_y)], fill=255)
        if style == "Cargo":
            px = C + sgn * (waist * 0.75)
            t.rectangle((min(px, px + sgn * 22), crotch_y + 20, max(px, px + sgn * 22), crotch_y + 45),
                        outline=_shade(main, 0.7), width=2)
    t.rectangle((C - waist, top, C + waist, top + 9), fill=_shade(main, 0.8))
    t.line([(C, top + 9), (C, crotch_y - 8)], fill=_shade(main, 0.7), width=2)


def _outerwear(m, t, main, sec, rng, hem_y, half, long_lapel):
    """Shared body of jackets and coats: long sleeves, lapels, front opening, buttons."""
    top = _u(rng, 34, 46)
    m.polygon([(C - half + 6, top), (C + half - 6, top), (C + half, hem_y), (C - half, hem_y)], fill=255)
    for sgn in (-1, 1):
        x0 = C + sgn * (half - 6)
        m.polygon([(x0, top), (x0 + sgn * _u(rng, 40, 50), top + _u(rng, 135, 160)),
                   (x0 + sgn * 18, top + _u(rng, 150, 170)), (x0 - sgn * 2, top + 55)], fill=255)
    neck = _u(rng, 14, 20)
    m.polygon([(C - neck, top - 1), (C + neck, top - 1), (C, top + neck * 1.4)], fill=0)
    dark = _shade(main, 0.6)
    lapel_y = top + (_u(rng, 70, 95) if long_lapel else _u(rng, 40, 55))
    for sgn in (-1, 1):
        t.polygon([(C + sgn * neck, top), (C + sgn * (neck + 18), top + 14), (C, lapel_y)], outline=dark, width=2)
    t.line([(C, lapel_y), (C, hem_y)], fill=dark, width=2)
    for k in range(int(rng.integers(3, 6))):
        by = lapel_y + 10 + k * (hem_y - lapel_y - 20) / 5
        t.ellipse((C + 3, by - 3, C + 9, by + 3), fill=sec)
    return top


def _jacket(m, t, main, sec, style, rng):
    hem_y = _u(rng, 150, 168) if style == "Cropped" else _u(rng, 175, 200)
    half = _u(rng, 48, 60)
    _outerwear(m, t, main, sec, rng, hem_y, half, long_lapel=style == "Tailored")
    if style == "Bomber":
        t.rectangle((C - half, hem_y - 10, C + half, hem_y), fill=_shade(main, 0.7))


def _coat(m, t, main, sec, style, rng):
    hem_y = _u(rng, 220, 246)
    half = _u(rng, 52, 66)
    top = _outerwear(m, t, main, sec, rng, hem_y, half, long_lapel=True)
    if style in ("Belted", "Trench") or rng.random() < 0.3:
        belt_y = top + _u(rng, 70, 85)
        t.rectangle((C - half, belt_y, C + half, belt_y + 9), fill=_shade(main, 0.7))


def _shoes(m, t, main, sec, style, rng):
    boot = "Boots" in style
    length = _u(rng, 100, 120)
    height = _u(rng, 75, 95) if boot else _u(rng, 34, 46)
    sole = _u(rng, 6, 11)
    sole_colour = sec if style == "Sneakers" else _shade(main, 0.4)
    inside = _shade(main, 0.45)
    # Two shoes side on, the back one higher and further left, like a packshot of a pair.
    for dx, base in ((-26, _u(rng, 140, 150)), (24, _u(rng, 195, 205))):
        heel_x = C - length / 2 + dx
        toe_x = heel_x + length
        if boot:
            # Shaft up from the heel, then the instep slopes down to a rounded toe.
            outline = [(heel_x, base - height), (heel_x + length * 0.38, base - height),
                       (heel_x + length * 0.45, base - height * 0.45), (toe_x - 22, base - height * 0.32),
                       (toe_x, base - 8), (toe_x, base), (heel_x, base)]
        else:
            # Heel counter, a dip for the foot opening, then a low vamp to the toe.
            outline = [(heel_x, base - height * 0.8), (heel_x + length * 0.08, base - height),
                       (heel_x + length * 0.5, base - height * 0.7), (toe_x - 24, base - height * 0.5),
                       (toe_x, base - 8), (toe_x, base), (heel_x, base)]
        m.polygon(outline, fill=255)
        m.ellipse((toe_x - 34, base - height * 0.55, toe_x + 2, base), fill=255)
        m.rectangle((heel_x - 2, base, toe_x + 4, base + sole), fill=255)
        t.rectangle((heel_x - 2, base, toe_x + 4, base + sole), fill=sole_colour)
        if not boot:
            # The dark inside of the shoe, seen through the opening.
            t.ellipse((heel_x + length * 0.06, base - height * 1.12, heel_x + length * 0.52, base - height * 0.78),
                      fill=inside)
        if style in ("Sneakers", "Derby Shoes"):
            for k in range(3):
                lx = heel_x + length * (0.5 + 0.08 * k)
                t.line([(lx, base - height * 0.72), (lx + 7, base - height * 0.55)], fill=sec, width=2)
        elif style == "Chelsea Boots":
            t.rectangle((heel_x + length * 0.14, base - height, heel_x + length * 0.3, base - height * 0.45),
                        fill=_shade(main, 0.7))


def _bag(m, t, main, sec, style, rng):
    top = _u(rng, 95, 120)
    bottom = _u(rng, 205, 230)
    half_top = _u(rng, 45, 62)
    half_bottom = half_top + _u(rng, 0, 18)
    if style == "Bucket":
        half_top, half_bottom = half_bottom, half_top
    m.polygon([(C - half_top, top), (C + half_top, top), (C + half_bottom, bottom), (C - half_bottom, bottom)], fill=255)
    m.rounded_rectangle((C - half_bottom, bottom - 16, C + half_bottom, bottom), radius=8, fill=255)
    handle = half_top * _u(rng, 0.4, 0.75) if style not in ("Crossbody", "Shoulder") else half_top * 0.95
    rise = _u(rng, 40, 70) if style not in ("Crossbody", "Shoulder") else _u(rng, 80, 95)
    m.arc((C - handle, top - rise, C + handle, top + rise), 180, 360, fill=255, width=int(_u(rng, 6, 10)))
    flap_y = top + (bottom - top) * _u(rng, 0.3, 0.5)
    t.polygon([(C - half_top, top), (C + half_top, top), (C + half_top, flap_y), (C - half_top, flap_y)],
              fill=_shade(main, 0.82))
    t.rectangle((C - 7, flap_y - 5, C + 7, flap_y + 5), fill=sec)


def _hat(m, t, main, sec, style, rng):
    crown_half = _u(rng, 40, 55)
    crown_top = _u(rng, 60, 90)
    base = _u(rng, 150, 170)
    if style == "Beanie":
        m.chord((C - crown_half - 8, crown_top - 20, C + crown_half + 8, base + 60), 180, 360, fill=255)
        m.rectangle((C - crown_half - 8, base + 5, C + crown_half + 8, base + 30), fill=255)
        for k in range(-6, 7):
            x = C + k * (crown_half + 8) / 7
            t.line([(x, base + 5), (x, base + 30)], fill=_shade(main, 0.75), width=2)
        return
    m.rounded_rectangle((C - crown_half, crown_top, C + crown_half, base + 4), radius=int(crown_half * 0.6), fill=255)
    if style == "Baseball":
        m.chord((C - crown_half, base - 14, C + crown_half + 55, base + 14), 0, 180, fill=255)
    else:
        brim = crown_half + (_u(rng, 45, 70) if style in ("Sun", "Panama") else _u(rng, 20, 38))
        m.ellipse((C - brim, base - 12, C + brim, base + 14), fill=255)
    t.rectangle((C - crown_half, base - 16, C + crown_half, base - 4), fill=sec)


def _scarf(m, t, main, sec, style, rng):
    width = _u(rng, 28, 40) * (1.4 if style in ("Oversized", "Blanket") else 1.0)
    loop_top = _u(rng, 28, 45)
    loop_half = _u(rng, 48, 62)
    m.arc((C - loop_half, loop_top, C + loop_half, loop_top + 2 * loop_half * 0.8), 180, 360, fill=255, width=int(width))
    mid_y = loop_top + loop_half * 0.8
    ends = (_u(rng, 190, 235), _u(rng, 170, 215))
    for sgn, end_y, lean in ((-1, ends[0], _u(rng, -10, 15)), (1, ends[1], _u(rng, -15, 10))):
        x_out = C + sgn * loop_half
        x_in = x_out - sgn * width
        m.polygon([(x_out, mid_y), (x_in, mid_y), (x_in + lean, end_y), (x_out + lean, end_y)], fill=255)
        # Fringe at the end.
        for k in range(7):
            fx = min(x_in, x_out) + lean + (k + 0.5) * width / 7
            m.line([(fx, end_y), (fx, end_y + 12)], fill=255, width=2)
        t.line([(min(x_in, x_out) + lean, end_y - 6), (max(x_in, x_out) + lean, end_y - 6)], fill=_shade(main, 0.7), width=2)


_SHAPES = {
    "dress": _dress,
    "top": _top,
    "skirt": _skirt,
    "trousers": _trousers,
    "jacket": _jacket,
    "shoes": _shoes,
    "bag": _bag,
    "hat": _hat,
    "coat": _coat,
    "scarf": _scarf,
}
