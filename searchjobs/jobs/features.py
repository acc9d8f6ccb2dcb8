"""The image descriptor: a deterministic vector computed with Pillow and NumPy.

One code path for catalog items and query photos. The vector is the
concatenation of four L2-normalised, weighted blocks, then L2-normalised as a
whole, so cosine similarity compares images:

1. colour histogram in HSV (12 hue x 3 saturation x 3 value bins, plus 4 grey
   levels for unsaturated pixels), square-rooted (Hellinger) so a dominant
   background does not drown the garment's colours;
2. colour layout: mean RGB of a 4x4 grid of cells (where the colours are);
3. shape: an 8x8 greyscale thumbnail, mean-centred (the silhouette);
4. edges: histograms of gradient orientation (8 bins) in 2x2 cells
   (stripes vs. checks vs. plain, and the outline's direction).

What it captures: colour, coarse layout and silhouette, pattern direction. It
is robust to moderate crops (80-95%), resizing, brightness changes of about
20% and JPEG compression (measured in bench/search_quality.py).
What it does not: it is not semantic (it does not know what a "dress" is: the
category filter does that), not rotation- or mirror-invariant, and sensitive to
busy backgrounds and strong colour casts; a photo of a person wearing the item
is matched mostly by colour.
"""

from __future__ import annotations

import io
from collections.abc import Iterable

import numpy as np
from PIL import Image

DESCRIPTOR_VERSION = "hsv-layout-shape-v1"  # stored with each catalog embedding; bump when the maths changes
WORK_SIZE = 64  # images are resized to WORK_SIZE x WORK_SIZE first: fast, and crops matter less
HUE_BINS, SAT_BINS, VAL_BINS = 12, 3, 3  # colour histogram bins for saturated pixels
GREY_BINS = 4  # value bins for unsaturated (grey, white, black) pixels
GREY_SATURATION = 0.18  # pixels less saturated than this count as grey
LAYOUT_GRID = 4  # 4x4 cells of mean colour
SHAPE_SIZE = 8  # 8x8 greyscale thumbnail
EDGE_CELLS, EDGE_BINS = 2, 8  # 2x2 cells of 8 orientation bins
# block weights (relative importance in the cosine): colour dominates, shape and edges refine
WEIGHTS = {"colour": 1.0, "layout": 0.7, "shape": 0.6, "edges": 0.45}

COLOUR_DIM = HUE_BINS * SAT_BINS * VAL_BINS + GREY_BINS
LAYOUT_DIM = LAYOUT_GRID * LAYOUT_GRID * 3
SHAPE_DIM = SHAPE_SIZE * SHAPE_SIZE
EDGE_DIM = EDGE_CELLS * EDGE_CELLS * EDGE_BINS
DESCRIPTOR_DIM = COLOUR_DIM + LAYOUT_DIM + SHAPE_DIM + EDGE_DIM  # 256


def _unit(block: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(block))
    return block / norm if norm > 0 else block


def _prepare(image: Image.Image) -> np.ndarray:
    """RGB floats in [0, 1] at WORK_SIZE x WORK_SIZE, transparency flattened on white."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        flat = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        flat.alpha_composite(rgba)
        image = flat
    small = image.convert("RGB").resize((WORK_SIZE, WORK_SIZE), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float32) / 255.0


def _colour_histogram(rgb: np.ndarray) -> np.ndarray:
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    maxc = rgb.max(axis=-1)
    minc = rgb.min(axis=-1)
    delta = maxc - minc
    sat = np.where(maxc > 0, delta / np.maximum(maxc, 1e-6), 0.0)
    safe = np.maximum(delta, 1e-6)
    hue = np.where(maxc == r, (g - b) / safe % 6.0, np.where(maxc == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0))
    hue = hue / 6.0  # 0..1
    grey = (sat < GREY_SATURATION) | (delta < 0.06)
    h_idx = np.minimum((hue * HUE_BINS).astype(np.int64), HUE_BINS - 1)
    s_idx = np.minimum(((sat - GREY_SATURATION) / (1 - GREY_SATURATION) * SAT_BINS).astype(np.int64), SAT_BINS - 1)
    v_idx = np.minimum((maxc * VAL_BINS).astype(np.int64), VAL_BINS - 1)
    colour_idx = (h_idx * SAT_BINS + np.maximum(s_idx, 0)) * VAL_BINS + v_idx
    grey_idx = HUE_BINS * SAT_BINS * VAL_BINS + np.minimum((maxc * GREY_BINS).astype(np.int64), GREY_BINS - 1)
    index = np.where(grey, grey_idx, colour_idx).ravel()
    hist = np.bincount(index, minlength=COLOUR_DIM).astype(np.float32)
    return np.sqrt(hist / hist.sum())


def _layout(rgb: np.ndarray) -> np.ndarray:
    cell = WORK_SIZE // LAYOUT_GRID
    means = rgb.reshape(LAYOUT_GRID, cell, LAYOUT_GRID, cell, 3).mean(axis=(1, 3))
    return (means - 0.5).ravel()


def _greyscale(rgb: np.ndarray) -> np.ndarray:
    return rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _shape(grey: np.ndarray) -> np.ndarray:
    cell = WORK_SIZE // SHAPE_SIZE
    thumb = grey.reshape(SHAPE_SIZE, cell, SHAPE_SIZE, cell).mean(axis=(1, 3))
    return (thumb - thumb.mean()).ravel()


def _edges(grey: np.ndarray) -> np.ndarray:
    gx = np.zeros_like(grey)
    gy = np.zeros_like(grey)
    gx[:, 1:-1] = grey[:, 2:] - grey[:, :-2]
    gy[1:-1, :] = grey[2:, :] - grey[:-2, :]
    magnitude = np.hypot(gx, gy)
    # orientation modulo 180 degrees: an edge's direction, not its polarity
    angle = np.arctan2(gy, gx) % np.pi
    bins = np.minimum((angle / np.pi * EDGE_BINS).astype(np.int64), EDGE_BINS - 1)
    cell = WORK_SIZE // EDGE_CELLS
    rows = np.arange(WORK_SIZE) // cell
    cell_index = rows[:, None] * EDGE_CELLS + rows[None, :]
    index = (cell_index * EDGE_BINS + bins).ravel()
    hist = np.bincount(index, weights=magnitude.ravel(), minlength=EDGE_DIM).astype(np.float32)
    return np.sqrt(hist / max(float(hist.sum()), 1e-6))


def describe(image: Image.Image) -> np.ndarray:
    """The descriptor of one image: float32, shape (DESCRIPTOR_DIM,), unit length, deterministic."""
    rgb = _prepare(image)
    grey = _greyscale(rgb)
    blocks = [
        WEIGHTS["colour"] * _unit(_colour_histogram(rgb)),
        WEIGHTS["layout"] * _unit(_layout(rgb)),
        WEIGHTS["shape"] * _unit(_shape(grey)),
        WEIGHTS["edges"] * _unit(_edges(grey)),
    ]
    return _unit(np.concatenate(blocks).astype(np.float32))


def describe_bytes(data: bytes) -> np.ndarray:
    """Describe already-validated image bytes."""
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return describe(image)


def describe_many(images: Iterable[Image.Image]) -> np.ndarray:
    """A batch: one row per image, each equal to describe(image)."""
    rows = [describe(image) for image in images]
    if not rows:
        return np.zeros((0, DESCRIPTOR_DIM), dtype=np.float32)
    return np.stack(rows)
