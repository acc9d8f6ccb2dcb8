"""Photo-like query images for the "similar items" measure of bench/search_quality.py (issue #16).

A person does not photograph a catalog packshot: they photograph a garment on a hanger against a
wall, under room light, slightly tilted. This module draws such photos of garments that are NOT in
the catalog, so the bench measures whether the search finds items of the same colour and pattern,
not whether it finds one known image again.

Kept apart from the catalog generator (searchjobs/catalog/demo.py) on purpose, so the bench cannot
grade itself: the silhouettes, pattern textures, fabric shading and scenes below are drawn by this
file's own code with its own proportions. Only the labels are shared: the colour names (with the
sRGB value each name stands for, jittered here) and the category and pattern names.

Each query: one garment of a category, a named main colour and a pattern (solid, striped, checked,
dotted), with fabric folds; composited onto a scene (a shaded or gradient wall, or a cluttered
room-like texture), rotated up to +-10 degrees, filling 30-80 % of the frame (bounding-box area);
then uneven light, a white-balance shift, camera noise, blur, and a JPEG round trip at quality 70.
Deterministic for a given numpy Generator.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from searchjobs.catalog.demo import PALETTE  # colour names -> the sRGB each name stands for (labels)

# Garment kinds drawn here; each is a catalog category name.
CATEGORIES = ("dress", "top", "skirt", "trousers", "coat")
# Patterns drawn here; each is a catalog pattern name. Solid first: plain items dominate.
PATTERNS = ("solid", "striped", "checked", "dotted")
PATTERN_WEIGHTS = (0.4, 0.2, 0.2, 0.2)
# Per-channel jitter of a named colour (the same name is never exactly one sRGB value).
COLOUR_JITTER = 14
# Side of the square canvas a garment is drawn on before it is placed in a scene.
GARMENT_CANVAS = 320
# Share of the frame the garment's bounding box covers.
FILL_RANGE = (0.30, 0.80)
# Rotation of the garment in the frame, degrees either way.
MAX_TILT_DEG = 10.0
# Output frame sizes (width, height): phone portrait, landscape and square crops.
FRAMES = ((480, 640), (640, 480), (540, 540), (450, 600))
# Wall colours of rooms: off-whites, beiges, greys, a pale blue, a pale green, a taupe.
WALLS = ((232, 228, 220), (214, 200, 176), (196, 186, 166), (170, 170, 168), (128, 128, 126),
         (200, 210, 218), (196, 206, 188), (160, 146, 132), (236, 236, 238))
# Muted colours of furniture, frames and floors in a cluttered room.
CLUTTER = ((120, 96, 72), (90, 80, 70), (160, 150, 140), (60, 60, 64), (190, 180, 160), (140, 110, 90),
           (100, 110, 120), (210, 205, 195), (80, 70, 60), (170, 160, 130))
# Light, colour and sensor ranges.
LIGHT_RANGE = (0.55, 1.15)  # darkest and brightest corner of the illumination field
WHITE_BALANCE = 0.12  # per-channel gain deviates up to +-12 % (warm or cool cast)
NOISE_SIGMA = (1.5, 6.0)  # Gaussian sensor noise, in 0-255 units
BLUR_RADIUS = (0.0, 1.4)
JPEG_QUALITY = 70


@dataclass(frozen=True)
class PhotoQuery:
    image: Image.Image
    category: str
    colour: str
    pattern: str
    scene: str  # "wall", "gradient" or "room"


def make_query(rng: np.random.Generator, category: str | None = None, colour: str | None = None,
               pattern: str | None = None) -> PhotoQuery:
    category = category or CATEGORIES[int(rng.integers(len(CATEGORIES)))]
    colour = colour or list(PALETTE)[int(rng.integers(len(PALETTE)))]
    pattern = pattern or PATTERNS[int(rng.choice(len(PATTERNS), p=PATTERN_WEIGHTS))]
    garment, mask = _garment(category, colour, pattern, rng)
    width, height = FRAMES[int(rng.integers(len(FRAMES)))]
    scene_kind = ("wall", "gradient", "room")[int(rng.integers(3))]
    scene = _scene(scene_kind, width, height, rng)
    photo = _place(scene, garment, mask, rng)
    photo = _camera(photo, rng)
    return PhotoQuery(photo, category, colour, pattern, scene_kind)


def make_queries(count: int, seed: int) -> list[PhotoQuery]:
    """`count` queries cycling over categories and colours, patterns drawn at random."""
    rng = np.random.default_rng([seed, 16])
    colours = list(PALETTE)
    return [make_query(rng, CATEGORIES[i % len(CATEGORIES)], colours[(i // len(CATEGORIES)) % len(colours)])
            for i in range(count)]


# ---------------------------------------------------------------------------
# The garment
# ---------------------------------------------------------------------------


def _named(colour: str, rng: np.random.Generator) -> np.ndarray:
    base = np.array(PALETTE[colour], dtype=np.float32)
    return np.clip(base + rng.uniform(-COLOUR_JITTER, COLOUR_JITTER, 3), 0, 255)


def _other_colour(main: str, rng: np.random.Generator) -> str:
    far = [n for n, rgb in PALETTE.items()
           if np.abs(np.array(rgb, dtype=float) - np.array(PALETTE[main], dtype=float)).sum() > 150]
    return far[int(rng.integers(len(far)))]


def _garment(category: str, colour: str, pattern: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(H x W x 3 float RGB, H x W float alpha) of one garment on a square canvas."""
    s = GARMENT_CANVAS
    mask_img = Image.new("L", (s, s), 0)
    _OUTLINES[category](ImageDraw.Draw(mask_img), s, rng)
    mask = np.asarray(mask_img.filter(ImageFilter.GaussianBlur(0.7)), dtype=np.float32) / 255.0
    main = _named(colour, rng)
    second = _named(_other_colour(colour, rng), rng)
    amount = _pattern_amount(pattern, s, rng)
    rgb = main * (1 - amount[..., None]) + second * amount[..., None]
    rgb = rgb * _folds(s, rng)[..., None]
    return rgb, mask


def _pattern_amount(pattern: str, s: int, rng: np.random.Generator) -> np.ndarray:
    """0 = main colour, 1 = second colour; the main colour always covers most of the fabric."""
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
    angle = np.deg2rad(rng.uniform(-30, 30) + (90 if rng.random() < 0.5 else 0))
    u = xx * np.cos(angle) + yy * np.sin(angle)
    v = -xx * np.sin(angle) + yy * np.cos(angle)
    if pattern == "striped":
        period = rng.uniform(12, 34)
        return ((u % period) < period * rng.uniform(0.2, 0.4)).astype(np.float32)
    if pattern == "checked":
        period = rng.uniform(16, 40)
        bar = period * rng.uniform(0.2, 0.35)
        return 0.5 * ((u % period) < bar) + 0.5 * ((v % period) < bar)
    if pattern == "dotted":
        period = rng.uniform(14, 30)
        radius = period * rng.uniform(0.14, 0.26)
        du, dv = (u % period) - period / 2, (v % period) - period / 2
        return (du * du + dv * dv < radius * radius).astype(np.float32)
    return np.zeros((s, s), dtype=np.float32)


def _folds(s: int, rng: np.random.Generator) -> np.ndarray:
    """Brightness of hanging fabric: soft vertical folds plus a shadow towards one side."""
    x = np.arange(s, dtype=np.float32) / s
    shade = np.ones(s, dtype=np.float32)
    for _ in range(int(rng.integers(2, 5))):
        shade -= rng.uniform(0.04, 0.12) * np.cos(2 * np.pi * (x * rng.uniform(2, 6) + rng.uniform()))
    side = 1.0 + rng.uniform(-0.12, 0.12) * (x - 0.5) * 2
    return np.tile((shade * side)[None, :], (s, 1)).clip(0.6, 1.25)


def _dress(d: ImageDraw.ImageDraw, s: int, rng) -> None:
    c = s / 2
    top, waist_y, hem_y = rng.uniform(0.1, 0.16) * s, rng.uniform(0.38, 0.46) * s, rng.uniform(0.78, 0.95) * s
    strap, waist, hem = rng.uniform(0.1, 0.15) * s, rng.uniform(0.08, 0.11) * s, rng.uniform(0.18, 0.34) * s
    d.polygon([(c - strap, top), (c + strap, top), (c + waist, waist_y), (c + hem, hem_y),
               (c - hem, hem_y), (c - waist, waist_y)], fill=255)
    d.ellipse((c - strap * 0.6, top - strap * 0.5, c + strap * 0.6, top + strap * 0.5), fill=0)
    d.line([(c - strap * 0.7, top), (c, top - 0.07 * s), (c + strap * 0.7, top)], fill=255, width=3)  # hanger hook


def _top(d: ImageDraw.ImageDraw, s: int, rng) -> None:
    c = s / 2
    top, hem_y = rng.uniform(0.18, 0.26) * s, rng.uniform(0.7, 0.82) * s
    half, sleeve = rng.uniform(0.17, 0.24) * s, rng.uniform(0.12, 0.3) * s
    d.rectangle((c - half, top, c + half, hem_y), fill=255)
    for sgn in (-1, 1):
        x0 = c + sgn * half
        d.polygon([(x0, top), (x0 + sgn * sleeve, top + sleeve * 0.8), (x0 + sgn * sleeve * 0.6, top + sleeve * 1.1),
                   (x0, top + 0.16 * s)], fill=255)
    d.pieslice((c - 0.07 * s, top - 0.06 * s, c + 0.07 * s, top + 0.06 * s), 0, 180, fill=0)


def _skirt(d: ImageDraw.ImageDraw, s: int, rng) -> None:
    c = s / 2
    top, hem_y = rng.uniform(0.2, 0.28) * s, rng.uniform(0.7, 0.88) * s
    waist, hem = rng.uniform(0.14, 0.2) * s, rng.uniform(0.2, 0.36) * s
    d.polygon([(c - waist, top), (c + waist, top), (c + hem, hem_y), (c - hem, hem_y)], fill=255)
    d.pieslice((c - hem, hem_y - 0.05 * s, c + hem, hem_y + 0.05 * s), 0, 180, fill=255)


def _trousers(d: ImageDraw.ImageDraw, s: int, rng) -> None:
    c = s / 2
    top, crotch, ankle = rng.uniform(0.08, 0.14) * s, rng.uniform(0.36, 0.42) * s, rng.uniform(0.86, 0.95) * s
    waist, leg = rng.uniform(0.14, 0.18) * s, rng.uniform(0.08, 0.14) * s
    d.rectangle((c - waist, top, c + waist, crotch), fill=255)
    for sgn in (-1, 1):
        d.polygon([(c + sgn * waist, top), (c + sgn * 0.01 * s, crotch), (c + sgn * 0.02 * s, ankle),
                   (c + sgn * (0.02 * s + leg * 1.6), ankle)], fill=255)


def _coat(d: ImageDraw.ImageDraw, s: int, rng) -> None:
    c = s / 2
    top, hem_y = rng.uniform(0.1, 0.15) * s, rng.uniform(0.82, 0.95) * s
    half = rng.uniform(0.16, 0.22) * s
    d.polygon([(c - half, top), (c + half, top), (c + half * 1.15, hem_y), (c - half * 1.15, hem_y)], fill=255)
    for sgn in (-1, 1):
        x0 = c + sgn * half
        d.polygon([(x0, top), (x0 + sgn * 0.09 * s, top + 0.5 * s), (x0 + sgn * 0.03 * s, top + 0.52 * s),
                   (x0, top + 0.12 * s)], fill=255)
    d.polygon([(c - 0.05 * s, top), (c + 0.05 * s, top), (c, top + 0.14 * s)], fill=0)


_OUTLINES = {"dress": _dress, "top": _top, "skirt": _skirt, "trousers": _trousers, "coat": _coat}


# ---------------------------------------------------------------------------
# The scene and the camera
# ---------------------------------------------------------------------------


def _scene(kind: str, width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    wall = np.array(WALLS[int(rng.integers(len(WALLS)))], dtype=np.float32)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    if kind == "wall":
        # A plain wall, shaded: darker away from the light and towards the corners.
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        dist = np.hypot(xx - cx, yy - cy) / np.hypot(width, height)
        return wall * (1.05 - rng.uniform(0.2, 0.45) * dist)[..., None]
    if kind == "gradient":
        angle = rng.uniform(0, 2 * np.pi)
        t = (xx * np.cos(angle) + yy * np.sin(angle)) / max(width, height)
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
        other = np.array(WALLS[int(rng.integers(len(WALLS)))], dtype=np.float32)
        return wall * (1 - t[..., None]) + other * t[..., None]
    # A cluttered room: a floor, blurred furniture blocks and frames, fine texture.
    img = Image.new("RGB", (width, height), tuple(int(v) for v in wall))
    d = ImageDraw.Draw(img)
    floor_y = rng.uniform(0.7, 0.9) * height
    d.rectangle((0, floor_y, width, height), fill=CLUTTER[int(rng.integers(len(CLUTTER)))])
    for _ in range(int(rng.integers(5, 12))):
        x0, y0 = rng.uniform(-0.1, 1.0) * width, rng.uniform(-0.1, 1.0) * height
        w, h = rng.uniform(0.08, 0.4) * width, rng.uniform(0.08, 0.5) * height
        fill = CLUTTER[int(rng.integers(len(CLUTTER)))]
        if rng.random() < 0.5:
            d.rectangle((x0, y0, x0 + w, y0 + h), fill=fill)
        else:
            d.rectangle((x0, y0, x0 + w, y0 + h), outline=fill, width=int(rng.integers(3, 10)))
    img = img.filter(ImageFilter.GaussianBlur(rng.uniform(1.5, 4.0)))
    grain = rng.normal(0, 6, (height, width, 1)).astype(np.float32)
    return np.asarray(img, dtype=np.float32) + grain


def _place(scene: np.ndarray, garment: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    height, width = scene.shape[:2]
    tilt = float(rng.uniform(-MAX_TILT_DEG, MAX_TILT_DEG))
    rgba = np.dstack([np.clip(garment, 0, 255), mask * 255]).astype(np.uint8)
    layer = Image.fromarray(rgba, "RGBA").rotate(tilt, resample=Image.Resampling.BICUBIC, expand=True)
    layer = layer.crop(layer.getchannel("A").getbbox())
    # Scale so the bounding box covers the drawn share of the frame, never more than fits.
    share = rng.uniform(*FILL_RANGE)
    scale = np.sqrt(share * width * height / (layer.width * layer.height))
    scale = min(scale, 0.98 * width / layer.width, 0.98 * height / layer.height)
    layer = layer.resize((max(8, int(layer.width * scale)), max(8, int(layer.height * scale))),
                         Image.Resampling.LANCZOS)
    x0 = int(rng.integers(0, width - layer.width + 1))
    y0 = int(rng.integers(0, height - layer.height + 1))
    out = Image.fromarray(np.clip(scene, 0, 255).astype(np.uint8))
    # A soft drop shadow on the wall, as a hanging garment casts.
    shadow = layer.getchannel("A").filter(ImageFilter.GaussianBlur(6)).point(lambda a: int(a * 0.35))
    dx, dy = int(rng.integers(-8, 9)), int(rng.integers(2, 12))
    out.paste((20, 20, 20), (x0 + dx, y0 + dy), shadow)
    out.paste(layer.convert("RGB"), (x0, y0), layer.getchannel("A"))
    return np.asarray(out, dtype=np.float32)


def _camera(photo: np.ndarray, rng: np.random.Generator) -> Image.Image:
    height, width = photo.shape[:2]
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    # Uneven light: a linear falloff across the frame from a random side.
    angle = rng.uniform(0, 2 * np.pi)
    t = (xx * np.cos(angle) + yy * np.sin(angle)) / max(width, height)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    low, high = LIGHT_RANGE
    dark, bright = rng.uniform(low, 0.9), rng.uniform(0.95, high)
    light = dark + t * (bright - dark)
    gains = 1.0 + rng.uniform(-WHITE_BALANCE, WHITE_BALANCE, 3)
    warm = rng.uniform(-WHITE_BALANCE, WHITE_BALANCE)  # a tungsten (+) or daylight-blue (-) cast
    gains = gains * np.array([1 + warm, 1.0, 1 - warm])
    photo = photo * light[..., None] * gains
    photo = photo + rng.normal(0, rng.uniform(*NOISE_SIGMA), photo.shape)
    img = Image.fromarray(np.clip(photo, 0, 255).astype(np.uint8))
    radius = rng.uniform(*BLUR_RADIUS)
    if radius > 0.3:
        img = img.filter(ImageFilter.GaussianBlur(radius))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=JPEG_QUALITY)
    buf.seek(0)
    out = Image.open(buf)
    out.load()
    return out
