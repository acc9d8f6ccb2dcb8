"""Drawing one demo packshot: a light backdrop, the garment's silhouette cut out of a patterned
texture in a named colour, turned a few degrees, with a thin darker rim."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from searchjobs.catalog.demo.garments import IMAGE_SIZE, RGB, SHAPES, STYLES, shade
from searchjobs.errors import SearchJobsError

# The patterns drawn; the catalog's names mention all but "solid".
PATTERNS: tuple[str, ...] = ("solid", "striped", "checked", "dotted", "floral", "colour-block")
# Largest rotation of a silhouette, in degrees either way.
MAX_ROTATION_DEG = 4.0
# Largest per-channel jitter applied to a named colour, so equal names still differ a little.
COLOUR_JITTER = 10
# Gaussian blur radius that anti-aliases the hard-edged silhouette mask.
MASK_SOFTEN_RADIUS = 0.8
# Blur radius that grows the silhouette into a thin dark rim.
RIM_RADIUS = 1.0

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

# Light, plain backgrounds (studio white, warm white, pale grey).
BACKGROUNDS: tuple[tuple[int, int, int], ...] = ((246, 246, 244), (244, 241, 235), (236, 237, 239))


class DemoCatalogError(SearchJobsError):
    """A demo item was requested with an unknown category, colour or pattern."""

    code = "demo_catalog_error"



def pick_secondary(main_rgb: Sequence[int], rng: np.random.Generator) -> str:
    # Pick a secondary colour that is visibly different from the main one.
    main = np.array(main_rgb, dtype=float)
    candidates = [n for n, rgb in PALETTE.items() if np.abs(np.array(rgb) - main).sum() > 120]
    return candidates[int(rng.integers(len(candidates)))]


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
    if category not in SHAPES:
        raise DemoCatalogError(f"unknown demo category {category!r}")
    if pattern not in PATTERNS:
        raise DemoCatalogError(f"unknown demo pattern {pattern!r}")
    base_rgb = _to_rgb(colour)
    if secondary is None:
        secondary = pick_secondary(base_rgb, rng)
    if style is None:
        styles = STYLES[category]
        style = styles[int(rng.integers(len(styles)))]
    main_rgb = _jitter(base_rgb, rng)
    sec_rgb = _jitter(_to_rgb(secondary), rng)
    s = IMAGE_SIZE

    background = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
    texture = _pattern_texture(pattern, main_rgb, sec_rgb, rng)
    mask = Image.new("L", (s, s), 0)
    # Silhouette goes into `mask`; seams, buttons and bands are drawn on `texture`.
    SHAPES[category](ImageDraw.Draw(mask), ImageDraw.Draw(texture), main_rgb, sec_rgb, style, rng)

    # Rotate garment and mask together, once, as one RGBA layer.
    texture.putalpha(mask.filter(ImageFilter.GaussianBlur(MASK_SOFTEN_RADIUS)))
    angle = float(rng.uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG))
    layer = texture.rotate(angle, resample=Image.Resampling.BILINEAR)
    alpha = layer.getchannel("A")
    # A thin darker rim (a slightly grown silhouette underneath) keeps light garments
    # visible on a light background.
    rim = alpha.filter(ImageFilter.GaussianBlur(RIM_RADIUS)).point(lambda v: min(255, v * 3))
    out = Image.new("RGB", (s, s), background)
    out.paste(shade(main_rgb, 0.55), (0, 0, s, s), rim)
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
