"""Deterministic image descriptor for "find catalog items that look like this photo".

One code path serves catalog images and query photos; cosine similarity between
two descriptors (a dot product, since they are L2-normalised) is the search score.

What it captures
  * colour: a soft-binned HSV histogram of the object (hue x saturation x value for
    colourful pixels, a grey ramp for colourless ones), with the plain backdrop of a
    packshot down-weighted;
  * coarse layout: the mean colour on a soft 4x4 grid (where the object is, and which
    colour is where);
  * shape and pattern: gradient-orientation histograms on a soft 4x4 grid
    (silhouette outline, stripe/check direction, pattern density).
  Histogram blocks are square-rooted (Hellinger) so cosine does not get dominated by
  a single large bin; each block is normalised, weighted, and the whole vector is
  L2-normalised.

What it is robust to
  moderate crops (80-95% of each side kept), any resize, brightness changes of about
  +-20%, JPEG compression, and small rotations (a few degrees), because everything is
  computed on a fixed-size downscale with soft bins.

What it does NOT do
  * it is not semantic: a red dress and a red scarf of similar shape can score close,
    which is why the product searches within one category at a time;
  * it is not rotation- or flip-invariant beyond a few degrees (layout and gradient
    blocks move), and not invariant to strong perspective changes;
  * it is background-sensitive: the backdrop estimate only handles plain, roughly
    uniform backgrounds; a busy photo background leaks into every block;
  * it sees the image at 64x64, so texture finer than ~1/30 of the image (fine knit,
    pinstripes), material, logos and text are invisible to it.

Bump DESCRIPTOR_VERSION whenever any number below changes: stored vectors from
another version are not comparable.
"""

from __future__ import annotations

import io
from collections.abc import Iterable

import numpy as np
from PIL import Image, ImageOps

from searchjobs.errors import SearchJobsError

# Identifies the maths below; stored alongside vectors as catalog_version.
DESCRIPTOR_VERSION = "hsvgrid-v1"

# Side of the square working image everything is computed on (pixels).
WORK_SIZE = 64
# Fixed resampling filter for the downscale: area average, fast and alias-free.
RESAMPLE = Image.Resampling.BOX
# Big photos are first shrunk by an integer factor while staying >= this many times WORK_SIZE
# (Pillow's reducing_gap): halves the cost for phone photos, no effect on small images.
REDUCING_GAP = 3.0
# Background colour of images with transparency: alpha is flattened onto white.
FLATTEN_BACKGROUND = (255, 255, 255)

# Hue bins of the colour histogram (circular).
HUE_BINS = 12
# Saturation bins of the colour histogram.
SAT_BINS = 2
# Value (brightness) bins of the colour histogram; few, so +-20% brightness stays in-bin.
VAL_BINS = 3
# Bins of the grey ramp for colourless pixels.
GREY_BINS = 8
# Saturation at which a pixel counts as fully colourful (linear ramp from SAT_GREY).
SAT_COLOUR = 0.30
# Saturation below which a pixel counts as fully grey.
SAT_GREY = 0.10
# Below this value (darkness) hue is noise, so pixels are treated as grey.
VAL_DARK = 0.12

# Pixels within this max-channel distance (0..1) of the border colour count as backdrop.
BACKDROP_NEAR = 0.04
# ...and from this distance on they count fully as object.
BACKDROP_FAR = 0.14
# Weight kept by backdrop pixels, so an all-backdrop image still has a histogram.
BACKDROP_FLOOR = 0.05

# Spatial grid (per side) of the layout and gradient blocks.
GRID = 4
# Gradient orientation bins over 0..180 degrees (unsigned: edge direction, not polarity).
ORIENT_BINS = 8

# Block weights (relative contribution to the cosine).
WEIGHT_COLOUR = 1.0
WEIGHT_LAYOUT = 0.6
WEIGHT_GRADIENT = 1.25

COLOUR_DIM = HUE_BINS * SAT_BINS * VAL_BINS + GREY_BINS
LAYOUT_DIM = GRID * GRID * 3
GRADIENT_DIM = GRID * GRID * ORIENT_BINS
# Length of every descriptor: 80 + 48 + 128 = 256, the vector(256) column of migration 0002.
DESCRIPTOR_DIM = COLOUR_DIM + LAYOUT_DIM + GRADIENT_DIM

# Opponent-colour transform (RGB -> brightness, red-green, yellow-blue), rows orthonormal.
_OPPONENT = np.array(
    [[1 / np.sqrt(3)] * 3, [1 / np.sqrt(2), -1 / np.sqrt(2), 0.0], [1 / np.sqrt(6), 1 / np.sqrt(6), -2 / np.sqrt(6)]],
    dtype=np.float32,
)
# Rec. 601 luma weights for the greyscale used by the gradient block.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


class ImageDecodeError(SearchJobsError):
    """The image bytes could not be decoded."""

    code = "image_unreadable"  # same code as intake's decode failures


def describe(image: Image.Image) -> np.ndarray:
    """Descriptor of one image: float32, shape (DESCRIPTOR_DIM,), unit L2 norm."""
    rgb = _working_rgb(image)
    hsv = _rgb_to_hsv(rgb)
    weight = _object_weight(rgb)
    blocks = (
        (WEIGHT_COLOUR, _colour_block(hsv, weight)),
        (WEIGHT_LAYOUT, _layout_block(rgb)),
        (WEIGHT_GRADIENT, _gradient_block(rgb)),
    )
    parts = [w * _unit(b) for w, b in blocks]
    return _unit(np.concatenate(parts)).astype(np.float32)


def describe_bytes(data: bytes) -> np.ndarray:
    """Decode already-validated image bytes with Pillow, then ``describe()``.

    Decodes at full resolution and applies the EXIF orientation, like the worker's
    query path (``intake.open_image``), so both give the same vector for the same bytes.
    """
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            # Phone photos are often stored sideways with an orientation tag.
            upright = ImageOps.exif_transpose(image)
            return describe(upright)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ImageDecodeError(f"cannot decode image: {exc}") from exc


def describe_many(images: Iterable[Image.Image]) -> np.ndarray:
    """Descriptors of several images, shape (n, DESCRIPTOR_DIM); row i == describe(image i)."""
    rows = [describe(image) for image in images]
    if not rows:
        return np.zeros((0, DESCRIPTOR_DIM), dtype=np.float32)
    return np.stack(rows)


# ---------------------------------------------------------------------------
# Pre-processing
# ---------------------------------------------------------------------------


def _working_rgb(image: Image.Image) -> np.ndarray:
    """Flatten alpha onto white, convert to RGB, downscale to WORK_SIZE square; floats in 0..1."""
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
    small = image.resize((WORK_SIZE, WORK_SIZE), RESAMPLE, reducing_gap=REDUCING_GAP)
    return np.asarray(small, dtype=np.float32) / 255.0


def _rgb_to_hsv(rgb: np.ndarray) -> np.ndarray:
    """HSV with all channels in 0..1 (hue as a fraction of a turn)."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    v = rgb.max(axis=-1)
    c = v - rgb.min(axis=-1)
    s = np.where(v > 0, c / np.maximum(v, 1e-6), 0.0)
    safe_c = np.maximum(c, 1e-6)
    h = np.where(v == r, (g - b) / safe_c, np.where(v == g, 2.0 + (b - r) / safe_c, 4.0 + (r - g) / safe_c))
    h = np.where(c > 0, (h / 6.0) % 1.0, 0.0)
    return np.stack([h, s, v], axis=-1)


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


def _colour_block(hsv: np.ndarray, weight: np.ndarray) -> np.ndarray:
    h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    # How colourful each pixel is; the rest of its weight goes to the grey ramp.
    chroma = np.clip((s - SAT_GREY) / (SAT_COLOUR - SAT_GREY), 0.0, 1.0) * np.clip(v / VAL_DARK - 1.0, 0.0, 1.0)
    # Saturation and value are rescaled over the range where hue is meaningful.
    s_pos = np.clip((s - SAT_GREY) / (1.0 - SAT_GREY), 0.0, 1.0)
    colourful = _soft_histogram([(h, HUE_BINS, True), (s_pos, SAT_BINS, False), (v, VAL_BINS, False)], weight * chroma)
    grey = _soft_histogram([(v, GREY_BINS, False)], weight * (1.0 - chroma))
    hist = np.concatenate([colourful, grey])
    return np.sqrt(hist / max(hist.sum(), 1e-12))


def _layout_block(rgb: np.ndarray) -> np.ndarray:
    """Mean opponent colour per soft grid cell, centred on the image mean."""
    opp = rgb @ _OPPONENT.T
    # Soft cell sums are separable: (cells x rows) @ image @ (columns x cells).
    sums = _CELL_WEIGHTS @ np.moveaxis(opp, -1, 0) @ _CELL_WEIGHTS.T
    cells = (sums / _CELL_MASS).reshape(3, GRID * GRID).T
    # Centring removes a global tint/brightness shift and keeps where-is-what.
    return (cells - cells.mean(axis=0)).ravel()


def _gradient_block(rgb: np.ndarray) -> np.ndarray:
    """Magnitude-weighted gradient orientations on a soft grid (a tiny HOG)."""
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
    magnitude = np.sqrt(np.take_along_axis(energy, best, axis=0)[0]).ravel()
    orientation = ((np.arctan2(gy, gx) / np.pi) % 1.0).ravel()
    lower, upper, frac = _soft_axis(orientation, ORIENT_BINS, circular=True)
    # One plane per orientation bin; a pixel's two bins always differ, so plain assignment is safe.
    planes = np.zeros((ORIENT_BINS, magnitude.size), dtype=np.float32)
    pixels = np.arange(magnitude.size)
    planes[lower, pixels] = magnitude * (1.0 - frac)
    planes[upper, pixels] = magnitude * frac
    planes = planes.reshape(ORIENT_BINS, WORK_SIZE, WORK_SIZE)
    hist = np.moveaxis(_CELL_WEIGHTS @ planes @ _CELL_WEIGHTS.T, 0, -1).ravel()
    return np.sqrt(hist / max(float(hist.sum()), 1e-12))


def _cell_weights(cells: int, size: int) -> np.ndarray:
    """(cells x size) matrix: how much each pixel row/column belongs to each soft grid cell."""
    centres = (np.arange(size, dtype=np.float32) + 0.5) / size
    lower, upper, frac = _soft_axis(centres, cells, circular=False)
    weights = np.zeros((cells, size), dtype=np.float32)
    columns = np.arange(size)
    np.add.at(weights, (lower, columns), 1.0 - frac)
    np.add.at(weights, (upper, columns), frac)
    return weights


def _unit(vector: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector


# Soft grid weights and per-cell pixel mass, computed once for WORK_SIZE.
_CELL_WEIGHTS = _cell_weights(GRID, WORK_SIZE)
_CELL_MASS = _CELL_WEIGHTS.sum(axis=1)[:, None] * _CELL_WEIGHTS.sum(axis=1)[None, :]
