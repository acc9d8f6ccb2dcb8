"""Query-photo perturbations for the search benchmarks (issue 3).

perturb(image, rng): random crop keeping 80-95% of each side at a random position, resize to
60-140% of the cropped size, brightness x[0.8, 1.2], then a JPEG round trip at quality 60.
Deterministic for a given numpy Generator.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageEnhance

CROP_RANGE = (0.80, 0.95)  # fraction of each side kept
RESIZE_RANGE = (0.6, 1.4)  # scale applied after cropping
BRIGHTNESS_RANGE = (0.8, 1.2)  # +-20%
JPEG_QUALITY = 60


def perturb(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    image = image.convert("RGB")
    w, h = image.size
    fw, fh = rng.uniform(*CROP_RANGE), rng.uniform(*CROP_RANGE)
    cw, ch = max(1, int(w * fw)), max(1, int(h * fh))
    x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    image = image.crop((x0, y0, x0 + cw, y0 + ch))
    scale = rng.uniform(*RESIZE_RANGE)
    image = image.resize((max(8, int(cw * scale)), max(8, int(ch * scale))), Image.Resampling.BILINEAR)
    image = ImageEnhance.Brightness(image).enhance(rng.uniform(*BRIGHTNESS_RANGE))
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=JPEG_QUALITY)
    buf.seek(0)
    out = Image.open(buf)
    out.load()
    return out


def perturb_bytes(data: bytes, rng: np.random.Generator) -> Image.Image:
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return perturb(image, rng)
