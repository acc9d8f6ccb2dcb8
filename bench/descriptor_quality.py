#!/usr/bin/env python
"""Descriptor quality without any server: recall@1/@5 of perturbed demo images, brute force.

Builds the demo catalog in memory, describes every image, then for a sample of items
perturbs the image (bench/perturb.py: crop 80-95% per side, resize 60-140%, brightness
+-20%, JPEG q60) and ranks the catalog by cosine *within the item's category*, as the
product searches. An item is found at k if its own SKU is among the k best.

    python bench/descriptor_quality.py --size 3000 --queries 300 --seed 1

Prints figures only; timing depends on the (shared) machine, so nothing is asserted.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.perturb import perturb  # noqa: E402
from searchjobs.catalog import (
    demo,
    descriptor,  # noqa: E402
)

# Ranks reported (recall@k).
TOP_KS = (1, 5)
# At most this many misses (not in the top 5) are listed with their top 3.
SHOW_MISSES = 10


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=3000, help="demo catalog items")
    parser.add_argument("--queries", type=int, default=300, help="perturbed queries (0 = every item)")
    parser.add_argument("--seed", type=int, default=1, help="catalog and perturbation seed")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    items = list(demo.generate_items(args.size, seed=args.seed))
    render_s = time.perf_counter() - started
    images = [_decode(item.image_png) for item in items]
    categories = np.array([item.category for item in items])

    started = time.perf_counter()
    catalog = descriptor.describe_many(images)
    describe_s = time.perf_counter() - started

    rng = np.random.default_rng(args.seed)
    count = args.size if args.queries <= 0 else min(args.queries, args.size)
    chosen = np.sort(rng.choice(args.size, size=count, replace=False))
    queries = [perturb(images[i], rng) for i in chosen]
    started = time.perf_counter()
    query_vectors = descriptor.describe_many(queries)
    query_s = time.perf_counter() - started

    hits = {k: 0 for k in TOP_KS}
    misses: list[tuple[str, str, list[str]]] = []
    per_category: dict[str, list[int]] = {c: [0, 0] for c in demo.DEMO_CATEGORIES}
    for index, vector in zip(chosen, query_vectors, strict=True):
        category = categories[index]
        pool = np.flatnonzero(categories == category)
        scores = catalog[pool] @ vector
        # Stable sort so ties resolve the same way on every run.
        ranked = pool[np.argsort(-scores, kind="stable")]
        rank = int(np.flatnonzero(ranked == index)[0])
        for k in TOP_KS:
            hits[k] += rank < k
        per_category[category][0] += 1
        per_category[category][1] += rank < 5
        if rank >= 5:
            misses.append((items[index].sku, items[index].name, [items[j].sku for j in ranked[:3]]))

    print(f"descriptor {descriptor.DESCRIPTOR_VERSION}, dim {descriptor.DESCRIPTOR_DIM}")
    print(f"catalog {args.size} items (seed {args.seed}), {count} perturbed queries, search within category")
    for k in TOP_KS:
        print(f"recall@{k}: {hits[k] / count:.3f}")
    print("recall@5 by category: " + ", ".join(
        f"{c} {h / n:.2f}" for c, (n, h) in per_category.items() if n))
    for sku, name, got in misses[:SHOW_MISSES]:
        print(f"  miss {sku} ({name}): top3 {got}")
    print(f"render {args.size / render_s:.0f} items/s; describe catalog {args.size / describe_s:.0f} images/s "
          f"(256x256); describe queries {count / query_s:.0f} images/s")
    return 0


def _decode(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB")


if __name__ == "__main__":
    sys.exit(main())
