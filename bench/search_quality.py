# ruff: noqa: E402, I001
"""Search quality through the real search path: near-copy recall, and similar-item precision on photos.

    python bench/search_quality.py [--size 3000] [--queries 0 (= every item)] [--seed 0]
                                   [--photo-queries 300] [--photo-seed 1]

Loads the demo catalog (`searchjobs.catalog.load.load_demo`, default 3000 items, procedurally
rendered; a DEMO catalog), then for every item (or --queries of them) takes its stored PNG,
perturbs it (bench/perturb.py: random crop 80-95% per side, resize 60-140%, brightness +-20%,
JPEG quality 60), describes it with searchjobs.catalog.descriptor and asks PgVectorBackend.search for
the item's category (HNSW index, ef_search and iterative scan as in the product, k = 12).
recall@k = share of queries whose own item is in the top k. "exact" repeats the ranking by
brute force over the stored embeddings of the category, to tell descriptor misses from index misses.

Similar items (issue #16): --photo-queries photo-like images of garments that are NOT in the catalog
(bench/photo_queries.py: other shapes and seeds, on a wall or in a room, tilted, uneven light, white
balance, noise, blur, JPEG 70), each labelled with a category, a colour name and a pattern. Through
PgVectorBackend.search, the top 5 of the query's category are graded by the catalog's own labels:
colour precision@5 = share of the 5 whose main colour is the query's; pattern precision@5 = share whose
pattern is the query's. Per colour, per pattern and overall; "exact" repeats it by brute force over the
stored embeddings (what a re-rank of the HNSW candidates with the exact vectors could reach at most).
Targets: colour >= 0.85, pattern >= 0.6, with near-copy recall@5 >= 0.95.
"""

from __future__ import annotations

import sys  # noqa: I001 - the path fix must come first: bench/http.py would shadow the stdlib `http`
from pathlib import Path

_BENCH = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _BENCH]
sys.path.insert(0, str(_BENCH.parent))

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from bench.common import Servers, log, pct, summary_line, table, write_results  # noqa: E402
from bench.perturb import perturb_bytes  # noqa: E402
from bench.photo_queries import make_queries  # noqa: E402


def parse_vector(text: str) -> np.ndarray:
    return np.array([float(x) for x in text.strip("[]").split(",")], dtype=np.float32)


COLOUR_TARGET = 0.85  # colour precision@5 on photo-like queries (issue #16)
PATTERN_TARGET = 0.6  # pattern precision@5
TOP = 5  # precision is graded on the top 5 hits


def similar_items(args, backend, matrices, labels, descriptor, k: int) -> dict | None:
    """Photo-like queries of unseen garments, graded by the catalog's colour and pattern labels."""
    if not args.photo_queries:
        return None
    log(f"drawing and querying {args.photo_queries} photo-like queries (seed {args.photo_seed})")
    rows, describe_ms = [], []
    for query in make_queries(args.photo_queries, args.photo_seed):
        t = time.perf_counter()
        vector = descriptor.describe(query.image)
        describe_ms.append((time.perf_counter() - t) * 1000)
        hits = [h["sku"] for h in backend.search(query.category, vector, k)][:TOP]
        matrix, skus = matrices[query.category]
        exact = [skus[i] for i in np.argsort(-(matrix @ vector))[:TOP]]

        def precision(found, index, want):
            return sum(labels[s][index] == want for s in found) / TOP

        rows.append({"category": query.category, "colour": query.colour, "pattern": query.pattern,
                     "scene": query.scene, "colour_p5": precision(hits, 0, query.colour),
                     "pattern_p5": precision(hits, 1, query.pattern),
                     "exact_colour_p5": precision(exact, 0, query.colour),
                     "exact_pattern_p5": precision(exact, 1, query.pattern),
                     "got": [labels[s][0] + "/" + labels[s][1] for s in hits]})
    return {"queries": rows, "describe_ms": describe_ms}


def _grouped(rows: list[dict], key: str) -> list[list]:
    out = []
    for value in sorted({r[key] for r in rows}):
        group = [r for r in rows if r[key] == value]
        out.append([value, len(group), *(float(np.mean([r[m] for r in group])) for m in _MEASURES)])
    return out


_MEASURES = ("colour_p5", "pattern_p5", "exact_colour_p5", "exact_pattern_p5")


def report_similar(photo: dict, args) -> dict:
    rows = photo["queries"]
    overall = ["ALL", len(rows), *(float(np.mean([r[m] for r in rows])) for m in _MEASURES)]
    headers = ["{}", "queries", "colour p@5", "pattern p@5", "exact colour", "exact pattern"]
    for key in ("colour", "pattern", "scene", "category"):
        print()
        table([h.format(key) for h in headers], _grouped(rows, key) + [overall],
              title=f"Similar items by {key}: {len(rows)} photo-like queries (bench/photo_queries.py, seed "
                    f"{args.photo_seed}), top {TOP} of the query's category via PgVectorBackend.search")
    print(f"photo describe p50 {pct(photo['describe_ms'], 50):.1f} ms, p95 {pct(photo['describe_ms'], 95):.1f} ms")
    return {"colour_p5": overall[2], "pattern_p5": overall[3], "exact_colour_p5": overall[4],
            "photo_queries": len(rows)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=3000)
    parser.add_argument("--queries", type=int, default=0, help="queries (0 = one per catalog item)")
    parser.add_argument("--seed", type=int, default=0, help="catalog seed")
    parser.add_argument("--photo-queries", type=int, default=300, help="photo-like similar-item queries (0 = none)")
    parser.add_argument("--photo-seed", type=int, default=1, help="seed of the photo-like queries")
    args = parser.parse_args()

    import sqlalchemy as sa

    from searchjobs import defaults
    from searchjobs.catalog import descriptor
    from searchjobs.catalog.backends import EF_SEARCH, PgVectorBackend
    from searchjobs.catalog.load import load_demo

    with Servers(pg_stat_statements=False) as servers:
        engine = servers.engine()
        with engine.begin() as conn:
            conn.execute(sa.text("TRUNCATE catalog_items CASCADE"))
        log(f"loading the demo catalog: {args.size} items")
        started = time.perf_counter()
        load_demo(engine, args.size, seed=args.seed)
        load_s = time.perf_counter() - started
        log(f"loaded in {load_s:.1f}s ({args.size / load_s:.0f} items/s incl. rendering, describing, upserting)")
        with engine.connect() as conn:
            conn.execute(sa.text("ANALYZE catalog_items"))
            items = conn.execute(sa.text(
                "SELECT sku, i.category, image_data, e.embedding::text, attributes FROM catalog_items i "
                "JOIN catalog_embeddings e ON e.item_id = i.id JOIN catalog_state s ON s.active_embedder = e.embedder "
                "ORDER BY i.id")).all()
        by_cat: dict[str, list[tuple[str, np.ndarray]]] = defaultdict(list)
        labels = {sku: (attrs["colour"], attrs["pattern"]) for sku, _, _, _, attrs in items}
        for sku, category, _, emb, _ in items:
            by_cat[category].append((sku, parse_vector(emb)))
        matrices = {c: (np.stack([v for _, v in rows]), [s for s, _ in rows]) for c, rows in by_cat.items()}
        backend = PgVectorBackend(servers.engine().execution_options(isolation_level="AUTOCOMMIT"),
                                  "http://bench")
        rng = np.random.default_rng(12345)
        chosen = items if not args.queries else [items[i] for i in rng.choice(len(items), args.queries, replace=False)]
        stats = defaultdict(lambda: {"n": 0, "r1": 0, "r5": 0, "x1": 0, "x5": 0})
        latencies, describe_ms, misses = [], [], []
        log(f"querying {len(chosen)} perturbed images")
        for sku, category, data, _, _ in chosen:
            image = perturb_bytes(data, rng)
            t = time.perf_counter()
            vector = descriptor.describe(image)
            describe_ms.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            hits = backend.search(category, vector, defaults.DEFAULT_TOP_K)
            latencies.append((time.perf_counter() - t) * 1000)
            ranked = [h["sku"] for h in hits]
            matrix, skus = matrices[category]
            order = np.argsort(-(matrix @ vector))[:5]
            exact = [skus[i] for i in order]
            s = stats[category]
            s["n"] += 1
            s["r1"] += ranked[:1] == [sku]
            s["r5"] += sku in ranked[:5]
            s["x1"] += exact[:1] == [sku]
            s["x5"] += sku in exact
            if sku not in ranked[:5]:
                misses.append({"sku": sku, "category": category, "got": ranked[:5],
                               "exact_rank": exact.index(sku) + 1 if sku in exact else None})
        photo = similar_items(args, backend, matrices, labels, descriptor, defaults.DEFAULT_TOP_K)
        engine.dispose()

    rows = []
    total = {"n": 0, "r1": 0, "r5": 0, "x1": 0, "x5": 0}
    for category in sorted(stats):
        s = stats[category]
        for k in total:
            total[k] += s[k]
        rows.append([category, s["n"], s["r1"] / s["n"], s["r5"] / s["n"], s["x1"] / s["n"], s["x5"] / s["n"]])
    n = total["n"]
    rows.append(["ALL", n, total["r1"] / n, total["r5"] / n, total["x1"] / n, total["x5"] / n])
    print()
    table(["category", "queries", "recall@1", "recall@5", "exact@1", "exact@5"], rows,
          title=f"Search quality, demo catalog {args.size} items (seed {args.seed}), perturbed queries "
                f"(crop 80-95%, resize, brightness +-20%, JPEG q60); HNSW ef_search={EF_SEARCH}, k=12")
    print(f"query latency (PgVectorBackend.search): p50 {pct(latencies, 50):.2f} ms, p95 {pct(latencies, 95):.2f} ms; "
          f"describe p50 {pct(describe_ms, 50):.2f} ms; catalog load {args.size / load_s:.0f} items/s")
    summary = {"recall_at_1": total["r1"] / n, "recall_at_5": total["r5"] / n, "exact_recall_at_5": total["x5"] / n,
               "queries": n, "catalog": args.size}
    if photo:
        summary.update(report_similar(photo, args))
    summary["descriptor"] = descriptor.DESCRIPTOR_VERSION
    summary["describe_ms_p50"] = pct(describe_ms + (photo["describe_ms"] if photo else []), 50)
    summary["target_met"] = (total["r5"] / n >= 0.95 and (not photo or (
        summary["colour_p5"] >= COLOUR_TARGET and summary["pattern_p5"] >= PATTERN_TARGET)))
    write_results("search_quality", {
        "args": vars(args), "per_category": {c: dict(s) for c, s in stats.items()}, "summary": summary,
        "query_ms": {"p50": pct(latencies, 50), "p95": pct(latencies, 95)},
        "describe_ms_p50": pct(describe_ms, 50), "load_items_s": args.size / load_s, "misses_sample": misses[:50],
        "similar_items": {k: v for k, v in (photo or {}).items() if k != "describe_ms"},
    })
    print(summary_line("search_quality", summary))


if __name__ == "__main__":
    main()
