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
# Box blur radius that anti-aliases the hard-edged (and turned) silhouette mask: one pass, where a
# Gaussian blur is three, for the same soft edge at this size.
MASK_SOFTEN_RADIUS = 0.8
# Box blur radius that grows the silhouette into a thin dark rim.
RIM_RADIUS = 1.0
# The blurred silhouette's levels tripled: where the rim shows.
_RIM_LEVELS = [min(255, 3 * level) for level in range(256)]

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

    # Turn garment and hard mask together as one RGBA layer, moving whole pixels (a tenth of the cost
    # of resampling), then soften the turned mask: the blur anti-aliases drawn and turned edges alike.
    texture.putalpha(mask)
    angle = float(rng.uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG))
    layer = texture.rotate(angle, resample=Image.Resampling.NEAREST)
    alpha = layer.getchannel("A").filter(ImageFilter.BoxBlur(MASK_SOFTEN_RADIUS))
    # A thin darker rim (a slightly grown silhouette underneath) keeps light garments
    # visible on a light background.
    rim = alpha.filter(ImageFilter.BoxBlur(RIM_RADIUS)).point(_RIM_LEVELS)
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


# Pixel coordinates along one axis, and along the diagonal (x + y), for pattern maths: every
# pattern but the dots and the slanted colour block varies along one of these only, so it is
# computed on 256 (or 511) values and spread over the canvas by indexing, not per pixel.
_AXIS = np.arange(IMAGE_SIZE, dtype=np.float32)
_DIAGONAL = np.arange(2 * IMAGE_SIZE - 1, dtype=np.float32) * 0.7071
_DIAGONAL_INDEX = np.add.outer(np.arange(IMAGE_SIZE), np.arange(IMAGE_SIZE))  # [y, x] -> x + y


def _pattern_texture(pattern: str, main: RGB, sec: RGB, rng: np.random.Generator) -> Image.Image:
    """A full-canvas texture; the silhouette mask later cuts the garment out of it."""
    s = IMAGE_SIZE
    if pattern in ("solid", "floral"):
        texture = Image.new("RGB", (s, s), main)
        if pattern == "floral":
            _draw_flowers(ImageDraw.Draw(texture), main, sec, rng)
        return texture
    axis = _AXIS
    # Per pixel, 0 = main colour, 1 = even mix (check crossings), 2 = secondary colour.
    if pattern == "striped":
        period = rng.uniform(10, 30)
        width = period * rng.uniform(0.3, 0.6)
        direction = int(rng.integers(3))
        coord = (axis, axis, _DIAGONAL)[direction]  # along y, along x, or diagonal
        band = 2 * ((coord + rng.uniform(0, period)) % period < width).astype(np.uint8)
        if direction == 0:
            level = band[:, None].repeat(s, 1)
        elif direction == 1:
            level = band[None, :].repeat(s, 0)
        else:
            level = band[_DIAGONAL_INDEX]
    elif pattern == "checked":
        period = rng.uniform(14, 34)
        width = period * rng.uniform(0.35, 0.55)
        rows = ((axis + rng.uniform(0, period)) % period < width).astype(np.uint8)
        cols = ((axis + rng.uniform(0, period)) % period < width).astype(np.uint8)
        level = rows[:, None] + cols[None, :]
    elif pattern == "dotted":
        period = rng.uniform(12, 28)
        radius = period * rng.uniform(0.15, 0.3)
        # Every other row of dots shifts by half a period, like printed polka dots.
        shifted = np.floor(axis / period) % 2 == 1
        dx_plain = axis % period - period / 2
        dx_shifted = (axis + np.float32(period) / 2) % period - period / 2
        dx = np.where(shifted[:, None], dx_shifted[None, :], dx_plain[None, :])
        dy = (axis % period - period / 2)[:, None]
        level = 2 * (dx * dx + dy * dy < radius * radius).astype(np.uint8)
    else:  # colour-block
        cut = rng.uniform(0.35, 0.65) * s
        if rng.random() < 0.5:
            level = 2 * (axis > cut).astype(np.uint8)[:, None].repeat(s, 1)
        else:
            slant = (axis - s / 2) * rng.uniform(-0.6, 0.6)
            level = 2 * (axis[:, None] - slant[None, :] > cut).astype(np.uint8)
    # A 3-colour palette image: Pillow expands it to RGB in C, far cheaper than a numpy gather.
    texture = Image.frombytes("P", (s, s), np.ascontiguousarray(level, dtype=np.uint8).tobytes())
    texture.putpalette([*main, *_mix(main, sec, 0.5), *sec])
    return texture.convert("RGB")


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
