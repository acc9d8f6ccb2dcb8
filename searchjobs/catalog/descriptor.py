"""Deterministic image descriptor for "find catalog items that look like this photo".

One code path serves catalog images and query photos; cosine similarity between
two descriptors (a dot product, since they are L2-normalised) is the search score.

How it sees an image
  1. isolate the garment: when the border is one plain colour (a catalog packshot), the
     garment is what differs from it (no colour model needed: a packshot is described
     in half the time); otherwise GrabCut (OpenCV, 2 rounds) on a 64x64 downscale, started from
     "the border is backdrop, the rest may be object"; its colour models separate a
     garment from a shaded or gradient wall or a busy room;
  2. correct the light half-way: per-channel gains that take the backdrop half-way to
     grey (grey world on the backdrop, not on the garment: fully, a beige wall turned
     every garment blue);
  3. crop to the garment's bounding box, rescale to 64x64 and put it on a neutral
     backdrop: position and size in the frame no longer matter, and the wall leaks
     into no block; the same box is also kept at 96x96, unmasked, for the fabric.

What it captures (on the isolated garment)
  * colour: a soft-binned CIELAB histogram, 6 x 7 steps in chroma (a, b), 5 in
    lightness, so uneven light and folds shift little weight; pixels on strong edges
    count less (across a blurred print's edges the colours are mixtures of its two);
  * hue: a soft-binned hue x saturation x value histogram (12 x 4 x 3): hue and saturation
    stay as they are when a dimmer light scales every channel alike, where CIELAB's chroma
    shrinks with the light (a dim pink reads grey, a dim teal black); the hue of a
    near-grey is undefined, so below HUE_GREY_SATURATION it is spread over every hue;
  * coarse layout: the mean colour on a soft 4x4 grid (which colour is where);
  * shape: gradient-orientation histograms on a soft 4x4 grid (the outline);
  * pattern: inside the garment only, at two scales, the orientation histogram
    turned so its strongest bin comes first (stripes, checks, dots at any angle)
    and a histogram of edge strength (plain fabric vs print);
  * fabric: the power spectrum of the garment's inside at 96x96 (colours divided by
    its mean brightness, in opponent channels): the share of power in 10 log-spaced
    frequency bands (the print's scale), its total (plain vs print) and the
    magnitudes of its angular harmonics (stripes, checks, dots; a turn leaves them).
  The histogram blocks are centred (their mean element taken off, so their cosines
  are not all near 1), weighted (colour and hue count most: people search by colour first)
  and the whole vector is L2-normalised.
  ``analyse()`` also returns the dominant colours of the isolated garment (up to 3
  swatches: hex + share), which the result page shows as "the colours we saw".

What it is robust to
  crops, any resize, brightness and white-balance changes, JPEG compression,
  rotations of about 10 degrees, camera noise and blur; plain and busy backgrounds
  as long as the garment stands out from them (bench/search_quality.py measures both
  the near-copy recall and the colour/pattern precision on photo-like queries).

What it does NOT do
  * it is not semantic: a red dress and a red scarf of similar shape can score close,
    which is why the product searches within one category at a time;
  * a garment of the backdrop's own colour (a beige coat on a beige wall, a white
    shirt on a white packshot backdrop) can be cut badly;
  * it cannot tell a white garment under warm light from a cream one, or a grey wall
    from a beige one under a cast: light colours (white, pink, camel, khaki) drift
    most on photos;
  * colour and pattern share one vector: a print of another colour can outrank the
    same print in the right colour (bench/README.md has the trade-off, measured);
  * texture finer than ~1/40 of the garment (fine knit, pinstripes), material, logos
    and text are invisible to it.

Bump DESCRIPTOR_VERSION whenever any number below changes: stored vectors from
another version are not comparable.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

# One thread: the images are tiny, the worker runs one job per core, and OpenCV's thread pool
# is not safe to inherit across the fork of a forking worker.
cv2.setNumThreads(1)

# Identifies the maths below; stored alongside vectors as catalog_version.
DESCRIPTOR_VERSION = "garment-v4"

# Side of the square working image everything is computed on (pixels).
WORK_SIZE = 64
# Fixed resampling filter for the downscale: area average, fast and alias-free.
RESAMPLE = Image.Resampling.BOX
# Big photos are first shrunk by an integer factor while staying >= this many times WORK_SIZE
# (Pillow's reducing_gap): halves the cost for phone photos, no effect on small images.
REDUCING_GAP = 3.0
# Background colour of images with transparency: alpha is flattened onto white.
FLATTEN_BACKGROUND = (255, 255, 255)

# GrabCut: pixels this close to the border start as background, everything inside as probable object.
GRABCUT_MARGIN = 2
GRABCUT_ITERATIONS = 2
# A border this plain (this quantile of its pixels within PLAIN_BORDER_NEAR, max-channel 0..1, of its
# median colour) is a studio backdrop: the object is what differs from it by more than PLAIN_OBJECT_FAR.
PLAIN_BORDER_QUANTILE = 0.95
PLAIN_BORDER_NEAR = 0.05
PLAIN_OBJECT_FAR = 0.08
# Below this share of the image the "object" is noise: describe the whole image instead.
MIN_OBJECT_SHARE = 0.03
# The backdrop the isolated garment is put on for the layout and gradient blocks (RGB 0..1).
NEUTRAL = np.array([0.96, 0.96, 0.96], dtype=np.float32)

# White balance from the backdrop: how far towards grey (0 = off, 1 = fully), and the largest gain.
WB_STRENGTH = 0.5
WB_MAX_GAIN = 1.3

# Pixels within this max-channel distance (0..1) of the border colour count as backdrop.
BACKDROP_NEAR = 0.04
# ...and from this distance on they count fully as object.
BACKDROP_FAR = 0.14
# Weight kept by backdrop pixels, so an all-backdrop image still has a histogram.
BACKDROP_FLOOR = 0.05

# CIELAB colour histogram: bins per axis and the range each spans (values outside go to the edge bins).
L_BINS, A_BINS, B_BINS = 5, 6, 7
LAB_L = (0.0, 100.0)
LAB_A = (-50.0, 70.0)
LAB_B = (-60.0, 70.0)
# Histogram bins are raised to this power: between Hellinger (0.5) and plain shares (1).
COLOUR_POWER = 0.75
# The colour and hue blocks weight a pixel by 1 / (1 + (gradient / COLOUR_EDGE)^2): a pixel on an edge as strong
# as this (0..1 colour units per 2 pixels) counts half, so a print's blurred edges add few mixed colours.
COLOUR_EDGE = 0.08

# Hue block: bins of value (lightness), saturation and hue (circular), each 0..1 as OpenCV's float HSV gives
# them (hue / 360). Below this saturation a pixel's hue is noise (a grey under camera noise has every hue):
# its weight goes to every hue bin alike, in proportion to how far below it is.
HUE_V_BINS, HUE_S_BINS, HUE_H_BINS = 3, 4, 12
HUE_GREY_SATURATION = 0.2

# Dominant colours: at most this many swatches, k-means rounds, merge distance (scaled Lab units),
# smallest share shown, and the Lab axis scale (lightness counts half, as in the colour block).
SWATCHES = 3
KMEANS_ROUNDS = 8
KMEANS_SAMPLE = 800
SWATCH_MERGE = 12.0
SWATCH_MIN_SHARE = 0.10
_SWATCH_SCALE = np.array([0.5, 1.0, 1.0], dtype=np.float32)
# Everyday colour words for swatches, with a typical sRGB of each (so a swatch is never colour alone).
COLOUR_NAMES: dict[str, tuple[int, int, int]] = {
    "black": (25, 25, 25), "white": (240, 240, 236), "light grey": (190, 190, 190), "grey": (128, 128, 128),
    "dark grey": (70, 70, 72), "navy": (30, 40, 90), "blue": (40, 90, 200), "light blue": (130, 180, 230),
    "teal": (20, 128, 128), "green": (40, 140, 60), "olive": (110, 110, 45), "beige": (215, 200, 160),
    "tan": (190, 145, 90), "brown": (105, 65, 35), "burgundy": (120, 20, 45), "red": (205, 30, 40),
    "pink": (240, 150, 185), "orange": (240, 130, 40), "yellow": (235, 200, 50), "purple": (105, 50, 145),
    "lilac": (190, 160, 220),
}

# Spatial grid (per side) of the layout and gradient blocks.
GRID = 4
# Gradient orientation bins over 0..180 degrees (unsigned: edge direction, not polarity).
ORIENT_BINS = 6
# Bins of the pattern block's edge-strength histogram (log scale, see ENERGY_RANGE).
ENERGY_BINS = 10
ENERGY_RANGE = (-5.0, 0.0)  # natural log of the gradient magnitude (0..1 colour units per 2 pixels)

# The fabric block: the garment's crop at this side (pixels), its inside eroded by FABRIC_ERODE pixels
# and softened (Gaussian sigma) so the mask's edge adds no frequencies of its own.
FABRIC_SIZE = 96
FABRIC_ERODE_PX = 4
FABRIC_EDGE_SOFTEN = 2.0
# Radial frequency bands, log-spaced between these many cycles per FABRIC_SIZE (folds and shading are
# slower than the lower end; the upper end is a period of ~3 pixels).
FABRIC_BANDS = 10
FABRIC_CYCLES = (3.0, 42.0)
# Texture contrast (log10 of the relative power in the bands) in soft bins over this range.
CONTRAST_BINS = 8
CONTRAST_RANGE = (-3.5, -0.5)
# Orientation bins of the spectrum over 0..180 degrees, and the angular harmonics kept (magnitudes only:
# a turned pattern has the same ones), each in soft bins over 0..1.
FABRIC_ANGLES = 12
FABRIC_HARMONICS = 4
HARMONIC_BINS = 4

# Block weights (relative contribution to the cosine).
WEIGHT_COLOUR = 3.2
WEIGHT_HUE = 1.9
WEIGHT_LAYOUT = 0.6
WEIGHT_GRADIENT = 1.25
WEIGHT_PATTERN = 2.5
WEIGHT_FABRIC = 1.0

COLOUR_DIM = L_BINS * A_BINS * B_BINS
HUE_DIM = HUE_V_BINS * HUE_S_BINS * HUE_H_BINS
LAYOUT_DIM = GRID * GRID * 3
GRADIENT_DIM = GRID * GRID * ORIENT_BINS
PATTERN_DIM = 2 * (ORIENT_BINS + ENERGY_BINS)
FABRIC_DIM = FABRIC_BANDS + CONTRAST_BINS + FABRIC_HARMONICS * HARMONIC_BINS
# Length of every descriptor: 210 + 144 + 48 + 96 + 32 + 34 = 564 (each embedder records its own dimension).
DESCRIPTOR_DIM = COLOUR_DIM + HUE_DIM + LAYOUT_DIM + GRADIENT_DIM + PATTERN_DIM + FABRIC_DIM

# Opponent-colour transform (RGB -> brightness, red-green, yellow-blue), rows orthonormal.
_OPPONENT = np.array(
    [[1 / np.sqrt(3)] * 3, [1 / np.sqrt(2), -1 / np.sqrt(2), 0.0], [1 / np.sqrt(6), 1 / np.sqrt(6), -2 / np.sqrt(6)]],
    dtype=np.float32,
)
# Rec. 601 luma weights for the greyscale used by the gradient block.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


@dataclass(frozen=True)
class Analysis:
    vector: np.ndarray  # the descriptor, as describe() returns it
    colours: list[dict]  # dominant colours of the garment: [{"hex": "#c81e28", "name": "red", "share": 0.62}, ...]


def describe(image: Image.Image) -> np.ndarray:
    """Descriptor of one image: float32, shape (DESCRIPTOR_DIM,), unit L2 norm."""
    return _vector(isolate(image))


def analyse(image: Image.Image) -> Analysis:
    """The descriptor and the garment's dominant colours, from one isolation (the query path)."""
    garment = isolate(image)
    return Analysis(_vector(garment), dominant_colours(garment.rgb, garment.weight))


def _vector(garment: Garment) -> np.ndarray:
    rgb, weight = garment.rgb, garment.weight
    # The histogram blocks are centred (their mean element taken off): all-positive vectors have cosines
    # bunched near 1, so a block's weight said little about its pull; centred, each block's similarity
    # spans -1..1 and the weights trade colour against pattern as they say (a fixed projection, no data).
    magnitude, orientation = _gradients(rgb)
    flat = _flat_weight(weight, magnitude)
    blocks = (
        (WEIGHT_COLOUR, _centred(_colour_block(rgb, flat))),
        (WEIGHT_HUE, _centred(_hue_block(rgb, flat))),
        (WEIGHT_LAYOUT, _layout_block(rgb)),
        (WEIGHT_GRADIENT, _centred(_gradient_block(magnitude, orientation))),
        (WEIGHT_PATTERN, _centred(_pattern_block(rgb, weight))),
        (WEIGHT_FABRIC, _centred(_fabric_block(garment.fabric, garment.fabric_mask))),
    )
    parts = [w * _unit(b) for w, b in blocks]
    return _unit(np.concatenate(parts)).astype(np.float32)


def describe_many(images: Iterable[Image.Image]) -> np.ndarray:
    """Descriptors of several images, shape (n, DESCRIPTOR_DIM); row i == describe(image i)."""
    rows = [describe(image) for image in images]
    if not rows:
        return np.zeros((0, DESCRIPTOR_DIM), dtype=np.float32)
    return np.stack(rows)


def dominant_colours(rgb: np.ndarray, weight: np.ndarray) -> list[dict]:
    """Up to SWATCHES colours of the garment, biggest first: {"hex": "#rrggbb", "name": "red", "share": 0..1}.

    A small k-means in CIELAB with lightness weighted down (a fold's shadow is the same colour);
    clusters closer than SWATCH_MERGE are merged, and shares below SWATCH_MIN_SHARE dropped,
    so a plain garment gives one swatch and a striped one two.
    """
    # Only the garment's inside: its edge pixels are blended with the neutral backdrop.
    pixels = rgb[weight > 0.9]
    if len(pixels) < SWATCHES:
        pixels = rgb.reshape(-1, 3)
    lab = _lab(pixels[None])[0] * _SWATCH_SCALE
    # The centres from an even sample of the pixels (a swatch is a share, not a pixel count): a third of the cost.
    centres = _kmeans(lab[::max(1, len(lab) // KMEANS_SAMPLE)], SWATCHES)
    labels = np.argmin(((lab[:, None] - centres[None]) ** 2).sum(-1), axis=1)
    groups = [np.flatnonzero(labels == k) for k in range(len(centres))]
    groups = sorted((g for g in groups if len(g)), key=len, reverse=True)
    merged: list[np.ndarray] = []
    for group in groups:
        centre = lab[group].mean(axis=0)
        for i, kept in enumerate(merged):
            if np.linalg.norm(lab[kept].mean(axis=0) - centre) < SWATCH_MERGE:
                merged[i] = np.concatenate([kept, group])
                break
        else:
            merged.append(group)
    swatches: list[dict] = []
    for group in sorted(merged, key=len, reverse=True):
        share = len(group) / len(lab)
        mean = np.clip(pixels[group].mean(axis=0), 0, 1)
        name = colour_name(mean)
        same = next((w for w in swatches if w["name"] == name), None)
        if same is not None:  # two shades of one word are one swatch to a reader
            same["share"] = round(same["share"] + share, 2)
        elif share >= SWATCH_MIN_SHARE:
            r, g, b = (mean * 255).round().astype(int)
            swatches.append({"hex": f"#{r:02x}{g:02x}{b:02x}", "name": name, "share": round(float(share), 2)})
    return swatches


def colour_name(rgb: np.ndarray) -> str:
    """The nearest of COLOUR_NAMES in CIELAB (lightness weighted down): a words-only label for a swatch."""
    lab = _lab(np.asarray(rgb, dtype=np.float32).reshape(1, 1, 3))[0, 0] * _SWATCH_SCALE
    return _NAMES[int(np.argmin(((_NAMED_LAB - lab) ** 2).sum(-1)))]


def _kmeans(points: np.ndarray, k: int) -> np.ndarray:
    """Deterministic k-means: farthest-point start from the median, then KMEANS_ROUNDS updates."""
    centres = [np.median(points, axis=0)]
    for _ in range(1, k):
        dist = np.min([((points - c) ** 2).sum(-1) for c in centres], axis=0)
        centres.append(points[int(dist.argmax())])
    centres = np.array(centres)
    for _ in range(KMEANS_ROUNDS):
        labels = np.argmin(((points[:, None] - centres[None]) ** 2).sum(-1), axis=1)
        for j in range(k):
            members = points[labels == j]
            if len(members):
                centres[j] = members.mean(axis=0)
    return centres


# ---------------------------------------------------------------------------
# Pre-processing
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Garment:
    """What isolate() keeps of an image: the garment at two resolutions."""

    rgb: np.ndarray  # WORK_SIZE square RGB 0..1 of its bounding box, on the NEUTRAL backdrop
    weight: np.ndarray  # its mask there (0..1)
    fabric: np.ndarray  # FABRIC_SIZE square RGB 0..1 of the same box, light-corrected, not masked
    fabric_mask: np.ndarray  # the garment's inside there (0..1, eroded away from its outline)


def isolate(image: Image.Image) -> Garment:
    """The garment alone, at WORK_SIZE (colour, layout, outline) and at FABRIC_SIZE (its fabric's pattern)."""
    flat = _flat_rgb(image)
    # Three resizes read this image (whole, garment, fabric): shrink a big one by an integer factor once,
    # keeping twice FABRIC_SIZE, instead of in each of them.
    factor = min(flat.size) // (2 * FABRIC_SIZE)
    if factor >= 2:
        flat = flat.reduce(factor)
    small = np.asarray(flat.resize((WORK_SIZE, WORK_SIZE), RESAMPLE, reducing_gap=REDUCING_GAP))
    mask = _plain_backdrop_mask(small)
    if mask is None:
        mask = _grabcut(small)
    if mask is None:
        rgb = small.astype(np.float32) / 255.0
        fabric = np.asarray(flat.resize((FABRIC_SIZE, FABRIC_SIZE), RESAMPLE, reducing_gap=REDUCING_GAP),
                            dtype=np.float32) / 255.0
        weight = _object_weight(rgb)
        return Garment(rgb, weight, fabric, _fabric_inside(weight))
    ys, xs = np.nonzero(mask)
    sx, sy = flat.width / WORK_SIZE, flat.height / WORK_SIZE
    box = (xs.min() * sx, ys.min() * sy, (xs.max() + 1) * sx, (ys.max() + 1) * sy)
    gains = _white_balance(small, mask)
    crop = flat.resize((WORK_SIZE, WORK_SIZE), RESAMPLE, box=box, reducing_gap=REDUCING_GAP)
    rgb = np.clip(np.asarray(crop, dtype=np.float32) / 255.0 * gains, 0.0, 1.0)
    fabric = flat.resize((FABRIC_SIZE, FABRIC_SIZE), RESAMPLE, box=box, reducing_gap=REDUCING_GAP)
    fabric = np.clip(np.asarray(fabric, dtype=np.float32) / 255.0 * gains, 0.0, 1.0)
    cut = Image.fromarray((mask * 255).astype(np.uint8))
    weight = np.asarray(cut.resize((WORK_SIZE, WORK_SIZE), Image.Resampling.BILINEAR,
                                   box=(xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)), dtype=np.float32) / 255.0
    rgb = rgb * weight[..., None] + NEUTRAL * (1.0 - weight[..., None])
    return Garment(rgb.astype(np.float32), weight.astype(np.float32), fabric, _fabric_inside(weight))


def _fabric_inside(weight: np.ndarray) -> np.ndarray:
    """The garment's inside at FABRIC_SIZE: its mask eroded, so the outline is no part of the pattern."""
    garment = (cv2.resize(weight, (FABRIC_SIZE, FABRIC_SIZE), interpolation=cv2.INTER_LINEAR) > 0.5).astype(np.uint8)
    # Eroded from the crop's border too (OpenCV's default border never erodes): the crop's edge is the
    # bounding box, where the mask's outermost row or column is often half wall.
    inside = cv2.erode(garment, _FABRIC_ERODE, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    # The softened edge stays on the garment: a wall pixel, even weighted by 2 %, is a strong edge of its own.
    return cv2.GaussianBlur(inside.astype(np.float32), (0, 0), FABRIC_EDGE_SOFTEN) * garment


def _plain_backdrop_mask(small: np.ndarray) -> np.ndarray | None:
    """The object's mask (0/1) when the border is one plain colour (a packshot), else None.

    GrabCut is the costly step of a describe (~10 ms of ~13); a studio backdrop needs no colour model:
    what differs from the border's colour is the object."""
    rgb = small.astype(np.float32) / 255.0
    border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]])
    backdrop = np.median(border, axis=0)
    if np.quantile(np.abs(border - backdrop).max(axis=-1), PLAIN_BORDER_QUANTILE) > PLAIN_BORDER_NEAR:
        return None
    mask = (np.abs(rgb - backdrop).max(axis=-1) > PLAIN_OBJECT_FAR).astype(np.uint8)
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    if mask.mean() < MIN_OBJECT_SHARE:
        return None
    return mask.astype(np.float32)


def _white_balance(small: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per-channel gains that make the backdrop grey (grey world on the backdrop), at WB_STRENGTH."""
    backdrop = small[mask < 0.5].astype(np.float32)
    if len(backdrop) < 16:
        return np.ones(3, dtype=np.float32)
    mean = np.maximum(backdrop.mean(axis=0), 1.0)
    gains = (mean.mean() / mean) ** WB_STRENGTH
    return np.clip(gains, 1 / WB_MAX_GAIN, WB_MAX_GAIN).astype(np.float32)


def _grabcut(small: np.ndarray) -> np.ndarray | None:
    """Foreground mask (0/1) of a WORK_SIZE RGB uint8 image, or None when no plausible object was found."""
    mask = np.zeros(small.shape[:2], np.uint8)
    background, foreground = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    m = GRABCUT_MARGIN
    cv2.setRNGSeed(0)  # GrabCut seeds its GMMs with k-means: the same image must give the same mask
    try:
        cv2.grabCut(np.ascontiguousarray(small[..., ::-1]), mask, (m, m, WORK_SIZE - 2 * m, WORK_SIZE - 2 * m),
                    background, foreground, GRABCUT_ITERATIONS, cv2.GC_INIT_WITH_RECT)
    except cv2.error:  # a flat image: no colour model can be fitted
        return None
    fg = ((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)).astype(np.float32)
    share = float(fg.mean())
    if share < MIN_OBJECT_SHARE:
        return None
    return fg


def _flat_rgb(image: Image.Image) -> Image.Image:
    """Flatten alpha onto white and convert to 8-bit RGB."""
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        flat = Image.new("RGBA", rgba.size, FLATTEN_BACKGROUND + (255,))
        flat.alpha_composite(rgba)
        image = flat
    elif image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        # 16-bit / float greyscale: rescale to 8 bits instead of letting convert() clip.
        arr = np.asarray(image, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        scaled = (arr - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(arr)
        image = Image.fromarray(scaled.astype(np.uint8))
    if image.mode != "RGB":
        image = image.convert("RGB")
    return image


def _object_weight(rgb: np.ndarray) -> np.ndarray:
    """Per-pixel weight: ~0 on a plain backdrop (colour of the border), 1 on the object."""
    border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]])
    backdrop = np.median(border, axis=0)
    # Only a uniform border is trusted to be a backdrop; a busy one means a real scene.
    if np.abs(border - backdrop).max(axis=-1).mean() > BACKDROP_NEAR:
        return np.ones(rgb.shape[:2], dtype=np.float32)
    dist = np.abs(rgb - backdrop).max(axis=-1)
    weight = np.clip((dist - BACKDROP_NEAR) / (BACKDROP_FAR - BACKDROP_NEAR), BACKDROP_FLOOR, 1.0)
    return weight.astype(np.float32)


# ---------------------------------------------------------------------------
# Soft histograms
# ---------------------------------------------------------------------------


def _soft_axis(x: np.ndarray, bins: int, circular: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Linear interpolation of values in 0..1 between the two nearest bin centres.

    Returns (lower index, upper index, upper weight); the lower weight is 1 - upper.
    """
    pos = x * bins - 0.5
    lower = np.floor(pos)
    frac = (pos - lower).astype(np.float32)
    lower = lower.astype(np.intp)
    upper = lower + 1
    if circular:
        lower %= bins
        upper %= bins
    else:
        # Outside the outer centres everything goes to the edge bin.
        frac = np.where(lower < 0, 1.0, np.where(upper >= bins, 0.0, frac)).astype(np.float32)
        lower = np.clip(lower, 0, bins - 1)
        upper = np.clip(upper, 0, bins - 1)
    return lower, upper, frac


def _soft_histogram(axes: list[tuple[np.ndarray, int, bool]], weight: np.ndarray) -> np.ndarray:
    """Joint histogram over several axes with multilinear (soft) binning."""
    interp = [_soft_axis(x.ravel(), bins, circ) for x, bins, circ in axes]
    sizes = [bins for _, bins, _ in axes]
    total = int(np.prod(sizes))
    weight = weight.ravel()
    hist = np.zeros(total, dtype=np.float64)
    # Visit each corner of the interpolation cell: 2**len(axes) bincounts.
    for corner in range(1 << len(axes)):
        index = np.zeros(weight.shape, dtype=np.intp)
        w = weight
        for k, (lower, upper, frac) in enumerate(interp):
            take_upper = (corner >> k) & 1
            index = index * sizes[k] + (upper if take_upper else lower)
            w = w * (frac if take_upper else 1.0 - frac)
        hist += np.bincount(index, weights=w, minlength=total)
    return hist


# ---------------------------------------------------------------------------
# Blocks
# ---------------------------------------------------------------------------


def _lab(rgb: np.ndarray) -> np.ndarray:
    """CIELAB of sRGB floats in 0..1: L in 0..100, a and b roughly -100..100."""
    return cv2.cvtColor(np.ascontiguousarray(rgb, dtype=np.float32), cv2.COLOR_RGB2Lab)


def _flat_weight(weight: np.ndarray, magnitude: np.ndarray) -> np.ndarray:
    """The colour blocks' pixel weights: the garment's, less on edges. Across a print's edges (blurred,
    JPEG-smeared) the pixels are mixtures of its two colours, which a crisp packshot of it does not have."""
    return weight / (1.0 + (magnitude / COLOUR_EDGE) ** 2)


def _colour_block(rgb: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Soft L x a x b histogram of the garment: chroma in fine steps, lightness in coarse ones."""
    lab = _lab(rgb)
    axes = [(np.clip((lab[..., 0] - LAB_L[0]) / (LAB_L[1] - LAB_L[0]), 0, 1), L_BINS, False),
            (np.clip((lab[..., 1] - LAB_A[0]) / (LAB_A[1] - LAB_A[0]), 0, 1), A_BINS, False),
            (np.clip((lab[..., 2] - LAB_B[0]) / (LAB_B[1] - LAB_B[0]), 0, 1), B_BINS, False)]
    hist = _soft_histogram(axes, weight)
    return (hist / max(hist.sum(), 1e-12)) ** COLOUR_POWER


def _hue_block(rgb: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Soft value x saturation x hue histogram of the garment: the colour as a dimmer or brighter light leaves it.

    A light that scales R, G and B alike changes value only; CIELAB's a and b shrink with it, which the
    colour block alone reads as a greyer or darker colour. A near-grey pixel's hue is spread evenly."""
    hsv = cv2.cvtColor(np.ascontiguousarray(rgb, dtype=np.float32), cv2.COLOR_RGB2HSV)
    value, saturation, hue = hsv[..., 2], hsv[..., 1], hsv[..., 0] / 360.0
    axes = [(value, HUE_V_BINS, False), (saturation, HUE_S_BINS, False)]
    sure = np.clip(saturation / HUE_GREY_SATURATION, 0.0, 1.0)
    hist = _soft_histogram([*axes, (hue, HUE_H_BINS, True)], weight * sure)
    hist += np.repeat(_soft_histogram(axes, weight * (1.0 - sure)) / HUE_H_BINS, HUE_H_BINS)
    return (hist / max(hist.sum(), 1e-12)) ** COLOUR_POWER


def _layout_block(rgb: np.ndarray) -> np.ndarray:
    """Mean opponent colour per soft grid cell, centred on the image mean."""
    opp = rgb @ _OPPONENT.T
    # Soft cell sums are separable: (cells x rows) @ image @ (columns x cells).
    sums = _CELL_WEIGHTS @ np.moveaxis(opp, -1, 0) @ _CELL_WEIGHTS.T
    cells = (sums / _CELL_MASS).reshape(3, GRID * GRID).T
    # Centring removes a global tint/brightness shift and keeps where-is-what.
    return (cells - cells.mean(axis=0)).ravel()


def _gradient_block(magnitude: np.ndarray, orientation: np.ndarray) -> np.ndarray:
    """Magnitude-weighted gradient orientations on a soft grid (a tiny HOG), from _gradients of the WORK_SIZE image."""
    magnitude, orientation = magnitude.ravel(), orientation.ravel()
    lower, upper, frac = _soft_axis(orientation, ORIENT_BINS, circular=True)
    # One plane per orientation bin; a pixel's two bins always differ, so plain assignment is safe.
    planes = np.zeros((ORIENT_BINS, magnitude.size), dtype=np.float32)
    pixels = np.arange(magnitude.size)
    planes[lower, pixels] = magnitude * (1.0 - frac)
    planes[upper, pixels] = magnitude * frac
    planes = planes.reshape(ORIENT_BINS, WORK_SIZE, WORK_SIZE)
    hist = np.moveaxis(_CELL_WEIGHTS @ planes @ _CELL_WEIGHTS.T, 0, -1).ravel()
    return np.sqrt(hist / max(float(hist.sum()), 1e-12))


def _gradients(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel: the strongest of the grey and opponent-colour gradients, as (magnitude, orientation 0..1)."""
    grey = rgb @ _LUMA
    # Colour edges of equal brightness (red stripes on green) would vanish in grey,
    # so take, per pixel, the strongest of the grey and opponent-colour gradients.
    channels = np.concatenate([grey[None], np.moveaxis(rgb @ _OPPONENT[1:].T, -1, 0)])
    gy = np.zeros_like(channels)
    gx = np.zeros_like(channels)
    gy[:, 1:-1] = channels[:, 2:] - channels[:, :-2]
    gx[:, :, 1:-1] = channels[:, :, 2:] - channels[:, :, :-2]
    energy = gy * gy + gx * gx
    best = energy.argmax(axis=0)[None]
    gy = np.take_along_axis(gy, best, axis=0)[0]
    gx = np.take_along_axis(gx, best, axis=0)[0]
    magnitude = np.sqrt(np.take_along_axis(energy, best, axis=0)[0])
    return magnitude, (np.arctan2(gy, gx) / np.pi) % 1.0


def _pattern_block(rgb: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """What the fabric's surface looks like, wherever it is and however it is turned.

    Inside the garment only (the silhouette's outline is the gradient block's job), at two scales:
    the orientation histogram turned so its strongest bin comes first (one peak: stripes; two a
    quarter-turn apart: checks; flat: dots or print), and a histogram of edge strength (plain fabric
    has only faint edges, a print many strong ones).
    """
    inside = cv2.erode((weight > 0.9).astype(np.uint8), np.ones((5, 5), np.uint8),
                       borderType=cv2.BORDER_CONSTANT, borderValue=0).astype(np.float32)
    parts = []
    for image, mask in ((rgb, inside), (cv2.resize(rgb, (WORK_SIZE // 2, WORK_SIZE // 2), interpolation=cv2.INTER_AREA),
                                          cv2.resize(inside, (WORK_SIZE // 2, WORK_SIZE // 2), interpolation=cv2.INTER_AREA))):
        magnitude, orientation = _gradients(image)
        keep = (mask > 0.99).astype(np.float32)
        if keep.sum() < 4:
            parts.append(np.zeros(ORIENT_BINS + ENERGY_BINS))
            continue
        orient = _soft_histogram([(orientation, ORIENT_BINS, True)], magnitude * keep)
        orient = np.roll(orient, -int(orient.argmax())) / max(float(orient.sum()), 1e-12)
        level = np.clip((np.log(magnitude + 1e-3) - ENERGY_RANGE[0]) / (ENERGY_RANGE[1] - ENERGY_RANGE[0]), 0, 1)
        energy = _soft_histogram([(level, ENERGY_BINS, False)], keep)
        parts.append(np.concatenate([np.sqrt(orient), np.sqrt(energy / energy.sum())]))
    return np.concatenate(parts)


def _fabric_block(fabric: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """The fabric's periodic texture, from the power spectrum of the garment's inside at FABRIC_SIZE.

    Colours are divided by the fabric's mean brightness (light and exposure cancel) and turned into
    opponent channels, so red stripes on green of equal brightness count too. Three parts: where the
    power lies across log-spaced frequency bands (the print's scale; plain fabric has none), how strong
    it is (plain vs print), and how it is spread over orientations, as the magnitudes of the angular
    harmonics (one peak: stripes; two a quarter-turn apart: checks; even: dots) that a turn leaves as they are.
    """
    area = float(inside.sum())
    if area < 64:
        return np.zeros(FABRIC_DIM)
    brightness = float((fabric @ _LUMA * inside).sum() / area)
    channels = np.moveaxis(fabric @ _OPPONENT.T, -1, 0) / max(brightness, 0.05)
    means = (channels * inside).sum(axis=(1, 2)) / area
    centred = (channels - means[:, None, None]) * inside
    power = (np.abs(np.fft.rfft2(centred.astype(np.float32))) ** 2).sum(axis=0) / (area * area)
    bands = np.bincount(_FABRIC_BAND.ravel(), weights=power.ravel(), minlength=FABRIC_BANDS + 1)[1:]
    total = float(bands.sum())
    if total <= 0:
        return np.zeros(FABRIC_DIM)
    shape = np.sqrt(bands / total)
    level = np.clip((np.log10(total) - CONTRAST_RANGE[0]) / (CONTRAST_RANGE[1] - CONTRAST_RANGE[0]), 0, 1)
    contrast = _soft_histogram([(np.array([level]), CONTRAST_BINS, False)], np.ones(1))
    angular = np.bincount(_FABRIC_ANGLE.ravel(), weights=(power * (_FABRIC_BAND > 0)).ravel(),
                          minlength=FABRIC_ANGLES)
    spectrum = np.abs(np.fft.rfft(angular))
    ratios = np.clip(spectrum[1:FABRIC_HARMONICS + 1] / max(float(spectrum[0]), 1e-12), 0, 1)
    harmonics = np.concatenate([_soft_histogram([(np.array([r]), HARMONIC_BINS, False)], np.ones(1))
                                for r in ratios])
    return np.concatenate([shape, np.sqrt(contrast), np.sqrt(harmonics / FABRIC_HARMONICS)])


def _fabric_geometry() -> tuple[np.ndarray, np.ndarray]:
    """Per rfft2 coefficient at FABRIC_SIZE: its radial band (0 = outside every band) and orientation bin."""
    fy = np.fft.fftfreq(FABRIC_SIZE) * FABRIC_SIZE
    fx = np.fft.rfftfreq(FABRIC_SIZE) * FABRIC_SIZE
    radius = np.hypot(fy[:, None], fx[None, :])
    low, high = np.log(FABRIC_CYCLES[0]), np.log(FABRIC_CYCLES[1])
    position = (np.log(np.maximum(radius, 1e-6)) - low) / (high - low)
    band = np.where((position >= 0) & (position < 1), np.floor(position * FABRIC_BANDS).astype(np.intp) + 1, 0)
    angle = np.mod(np.arctan2(fy[:, None], fx[None, :]), np.pi) / np.pi
    return band, np.minimum((angle * FABRIC_ANGLES).astype(np.intp), FABRIC_ANGLES - 1)


def _cell_weights(cells: int, size: int) -> np.ndarray:
    """(cells x size) matrix: how much each pixel row/column belongs to each soft grid cell."""
    centres = (np.arange(size, dtype=np.float32) + 0.5) / size
    lower, upper, frac = _soft_axis(centres, cells, circular=False)
    weights = np.zeros((cells, size), dtype=np.float32)
    columns = np.arange(size)
    np.add.at(weights, (lower, columns), 1.0 - frac)
    np.add.at(weights, (upper, columns), frac)
    return weights


def _centred(block: np.ndarray) -> np.ndarray:
    return block - block.mean()


def _unit(vector: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector


# The colour words in the swatches' scaled Lab, computed once.
_NAMES = list(COLOUR_NAMES)
_NAMED_LAB = _lab(np.array([list(COLOUR_NAMES.values())], dtype=np.float32) / 255.0)[0] * _SWATCH_SCALE

_FABRIC_BAND, _FABRIC_ANGLE = _fabric_geometry()
_FABRIC_ERODE = np.ones((2 * FABRIC_ERODE_PX + 1, 2 * FABRIC_ERODE_PX + 1), np.uint8)

# Soft grid weights and per-cell pixel mass, computed once for WORK_SIZE.
_CELL_WEIGHTS = _cell_weights(GRID, WORK_SIZE)
_CELL_MASS = _CELL_WEIGHTS.sum(axis=1)[:, None] * _CELL_WEIGHTS.sum(axis=1)[None, :]
