#!/usr/bin/env python
"""Descriptor quality without any server: near-copy recall@1/@5 and photo-query precision@5, brute force.

Builds the demo catalog in memory, describes every image, then for a sample of items
perturbs the image (bench/perturb.py: crop 80-95% per side, resize 60-140%, brightness
+-20%, JPEG q60) and ranks the catalog by cosine *within the item's category*, as the
product searches. An item is found at k if its own SKU is among the k best.
With --photo-queries N it also ranks N photo-like queries of unseen garments
(bench/photo_queries.py, the judge of bench/search_quality.py) and grades their top 5
by colour and pattern, per colour and per pattern: the fast harness to try a descriptor
lever before the command of record (bench/search_quality.py, through Postgres). It also prints the
pattern p@5 that a ranking with every hit of the query's colour could reach at most (the items of the
query's category, colour and pattern, at most 5): the catalog's own limit, whatever the descriptor.

    python bench/descriptor_quality.py --size 3000 --queries 300 --seed 0 --photo-queries 300

Prints figures only; timing depends on the (shared) machine, so nothing is asserted.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.perturb import perturb  # noqa: E402
from bench.photo_queries import make_queries  # noqa: E402
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
    parser.add_argument("--photo-queries", type=int, default=0, help="photo-like similar-item queries (0 = none)")
    parser.add_argument("--photo-seed", type=int, default=1, help="seed of the photo-like queries")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    items = list(demo.generate_items(args.size, seed=args.seed))
    render_s = time.perf_counter() - started
    images = [_decode(item.image_png) for item in items]
    categories = np.array([item.category for item in items])

    vectors, catalog_ms = [], []
    for image in images:
        started = time.perf_counter()
        vectors.append(descriptor.describe(image))
        catalog_ms.append((time.perf_counter() - started) * 1000)
    catalog = np.stack(vectors)
    describe_s = sum(catalog_ms) / 1000

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
          f"(256x256, p50 {np.median(catalog_ms):.1f} ms, p95 {np.percentile(catalog_ms, 95):.1f} ms); "
          f"describe queries {count / query_s:.0f} images/s")
    if args.photo_queries:
        _photo_queries(args, items, catalog, categories)
    return 0


def _photo_queries(args, items, catalog: np.ndarray, categories: np.ndarray) -> None:
    """Colour and pattern precision@5 of photo-like queries of unseen garments, in memory."""
    colour, pattern, describe_ms = defaultdict(list), defaultdict(list), []
    # What no ranking can beat: with all 5 hits of the query's colour, only the items of its colour AND
    # pattern can also match the pattern (a catalog holds ~size/190 items of a colour per category).
    ceiling = defaultdict(list)
    item_colours = np.array([item.attributes["colour"] for item in items])
    item_patterns = np.array([item.attributes["pattern"] for item in items])
    for query in make_queries(args.photo_queries, args.photo_seed):
        both = (categories == query.category) & (item_colours == query.colour) & (item_patterns == query.pattern)
        ceiling[query.pattern].append(min(int(both.sum()), 5) / 5)
        started = time.perf_counter()
        vector = descriptor.describe(query.image)
        describe_ms.append((time.perf_counter() - started) * 1000)
        pool = np.flatnonzero(categories == query.category)
        top = pool[np.argsort(-(catalog[pool] @ vector), kind="stable")][:5]
        colour[query.colour].append(np.mean([items[i].attributes["colour"] == query.colour for i in top]))
        pattern[query.pattern].append(np.mean([items[i].attributes["pattern"] == query.pattern for i in top]))
    every = [p for ps in colour.values() for p in ps]
    print(f"{args.photo_queries} photo-like queries (seed {args.photo_seed}): colour p@5 {np.mean(every):.3f}, "
          f"pattern p@5 {np.mean([p for ps in pattern.values() for p in ps]):.3f}; "
          f"describe p50 {np.median(describe_ms):.1f} ms, p95 {np.percentile(describe_ms, 95):.1f} ms")
    print("colour p@5: " + ", ".join(f"{c} {np.mean(v):.2f}" for c, v in sorted(colour.items())))
    print("pattern p@5: " + ", ".join(f"{c} {np.mean(v):.2f}" for c, v in sorted(pattern.items())))
    print(f"pattern p@5 ceiling at colour p@5 1.0: {np.mean([p for ps in ceiling.values() for p in ps]):.3f} ("
          + ", ".join(f"{c} {np.mean(v):.2f}" for c, v in sorted(ceiling.items())) + ")")


def _decode(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB")


if __name__ == "__main__":
    sys.exit(main())
