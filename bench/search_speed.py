# ruff: noqa: E402, I001
"""Search speed: per-category query latency at 10k and 100k catalog items, and embedding throughput.

    python bench/search_speed.py [--sizes 10000,100000] [--queries 300] [--base 600]

Catalog items are NOT rendered one by one (100k images would take far too long): --base demo
items are rendered and described for real, then every catalog row gets the descriptor of a
random base item of its category plus Gaussian noise (re-normalised), and rows are written
with COPY. The HNSW index is dropped before the load and rebuilt afterwards with the
migration's definition (m=16, ef_construction=64); its build time is reported. Queries are
real descriptors of perturbed demo images (bench/perturb.py) sent through
PgVectorBackend.search (the product's SQL: ef_search, iterative scan, category filter, k=12).
Also reported: HNSW recall@12 against an exact brute-force ranking of the same rows, the cost
of `catalog_version()` (run once per job), and embedding throughput for import
(describe only, decode+describe, and the full demo import path).
"""

from __future__ import annotations

import sys  # noqa: I001 - the path fix must come first: bench/http.py would shadow the stdlib `http`
from pathlib import Path

_BENCH = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _BENCH]
sys.path.insert(0, str(_BENCH.parent))

import argparse
import io
import sys
import time
from pathlib import Path

import numpy as np

from bench.common import Servers, log, pct, summary_line, table, write_results  # noqa: E402
from bench.perturb import perturb  # noqa: E402

NOISE = 0.025  # per-component Gaussian noise on synthetic descriptors (cosine to the base ~0.9)
# the active embedder (the descriptor) and its partial HNSW index (migration 0010's catalog_embedder_index)
ACTIVE_SQL = ("SELECT d.name, 'ix_catalog_embeddings_hnsw_' || d.id FROM catalog_state s "
              "JOIN catalog_embedders d ON d.name = s.active_embedder")


def base_items(n: int):
    """n rendered demo items: (category, PIL image, descriptor). Also returns embedding throughput."""
    from PIL import Image

    from searchjobs.catalog import demo
    from searchjobs.catalog import descriptor

    items, pngs = [], []
    t = time.perf_counter()
    for item in demo.generate_items(n, seed=3):
        pngs.append((item.category, item.image_png))
    render_s = time.perf_counter() - t
    t = time.perf_counter()
    images = []
    for category, png in pngs:
        image = Image.open(io.BytesIO(png)).convert("RGB")
        images.append((category, image))
    decode_s = time.perf_counter() - t
    t = time.perf_counter()
    for category, image in images:
        items.append((category, image, descriptor.describe(image)))
    describe_s = time.perf_counter() - t
    rates = {"render_per_s": n / render_s, "decode_per_s": n / decode_s, "describe_per_s": n / describe_s,
             "decode_and_describe_per_s": n / (decode_s + describe_s)}
    return items, rates


def vector_text(v: np.ndarray) -> str:
    return "[" + ",".join(np.char.mod("%.5f", v)) + "]"


def grow_catalog(servers: Servers, have: int, size: int, base, rng) -> tuple[float, float]:
    """Add rows have..size (synthetic descriptors), rebuild the HNSW index. Returns (copy_s, index_s)."""
    import psycopg2

    cats = sorted({c for c, _, _ in base})
    by_cat = {c: [v for cc, _, v in base if cc == c] for c in cats}
    conn = psycopg2.connect(servers.database_url)
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute(ACTIVE_SQL)
    embedder, index_name = cur.fetchone()
    cur.execute(f"DROP INDEX IF EXISTS {index_name}")
    t = time.perf_counter()
    buf = io.StringIO()
    for i in range(have, size):
        category = cats[i % len(cats)]
        vectors = by_cat[category]
        v = vectors[int(rng.integers(len(vectors)))] + rng.normal(0, NOISE, vectors[0].shape).astype(np.float32)
        v /= np.linalg.norm(v)
        buf.write(f"SYN-{i}\tSynthetic {category} {i}\t{category}\t{10 + i % 90}\t{vector_text(v)}\n")
    buf.seek(0)
    cur.execute("CREATE TEMP TABLE synthetic (sku text, name text, category text, price numeric, embedding vector)")
    cur.copy_expert("COPY synthetic FROM STDIN", buf)
    cur.execute("INSERT INTO catalog_items (sku, name, category, price) SELECT sku, name, category, price FROM synthetic")
    cur.execute("INSERT INTO catalog_embeddings (item_id, embedder, category, embedding) "
                "SELECT i.id, %s, s.category, s.embedding FROM synthetic s JOIN catalog_items i USING (sku)", (embedder,))
    cur.execute("DROP TABLE synthetic")
    copy_s = time.perf_counter() - t
    log(f"  copied {size - have:,} rows in {copy_s:.1f}s; building the HNSW index")
    t = time.perf_counter()
    cur.execute("SET maintenance_work_mem = '512MB'")
    cur.execute("SET statement_timeout = 0")  # the role's default (the product's 30 s) is for requests, not builds
    cur.execute("SELECT catalog_embedder_index(%s)", (embedder,))
    index_s = time.perf_counter() - t
    cur.execute("VACUUM ANALYZE catalog_items")
    cur.execute("VACUUM ANALYZE catalog_embeddings")
    conn.close()
    return copy_s, index_s


def load_matrix(servers: Servers):
    import psycopg2

    conn = psycopg2.connect(servers.database_url)
    cur = conn.cursor()
    cur.execute("SELECT i.sku, i.category, e.embedding::text FROM catalog_items i JOIN catalog_embeddings e "
                "ON e.item_id = i.id JOIN catalog_state s ON s.active_embedder = e.embedder")
    rows = cur.fetchall()
    conn.close()
    out = {}
    for sku, category, emb in rows:
        out.setdefault(category, ([], []))
        out[category][0].append(sku)
        out[category][1].append(np.array(emb.strip("[]").split(","), dtype=np.float32))
    return {c: (skus, np.stack(vs)) for c, (skus, vs) in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--queries", type=int, default=300, help="queries per size")
    parser.add_argument("--base", type=int, default=600, help="rendered demo items the synthetic rows derive from")
    parser.add_argument("--import-items", type=int, default=300, help="items for the full import-path timing")
    args = parser.parse_args()
    sizes = sorted(int(x) for x in args.sizes.split(","))

    import sqlalchemy as sa

    from searchjobs.catalog import descriptor
    from searchjobs.catalog.backends import EF_SEARCH, PgVectorBackend
    from searchjobs.catalog.load import load_demo
    from searchjobs.catalog import store as catalog

    rng = np.random.default_rng(7)
    log(f"rendering and describing {args.base} base demo items")
    base, rates = base_items(args.base)
    queries = []
    for _ in range(args.queries):
        category, image, _ = base[int(rng.integers(len(base)))]
        queries.append((category, descriptor.describe(perturb(image, rng))))
    results = []
    with Servers(pg_stat_statements=False) as servers:
        engine = servers.engine()
        with engine.begin() as conn:
            conn.execute(sa.text("TRUNCATE catalog_items CASCADE"))
        log(f"full import path (load_demo: render + describe + upsert) for {args.import_items} items")
        t = time.perf_counter()
        load_demo(engine, args.import_items, seed=11)
        rates["import_path_per_s"] = args.import_items / (time.perf_counter() - t)
        with engine.begin() as conn:
            conn.execute(sa.text("TRUNCATE catalog_items CASCADE"))
        backend = PgVectorBackend(engine.execution_options(isolation_level="AUTOCOMMIT"), "http://bench")
        have = 0
        for size in sizes:
            log(f"catalog {size:,}: adding {size - have:,} synthetic rows")
            copy_s, index_s = grow_catalog(servers, have, size, base, rng)
            have = size
            for category, vector in queries[:20]:  # warm the index into shared buffers
                backend.search(category, vector, 12)
            latencies, recalls = [], []
            matrix = load_matrix(servers)
            for category, vector in queries:
                t = time.perf_counter()
                hits = backend.search(category, vector, 12)
                latencies.append((time.perf_counter() - t) * 1000)
                skus, m = matrix[category]
                exact = {skus[i] for i in np.argsort(-(m @ vector))[:12]}
                recalls.append(len(exact & {h["sku"] for h in hits}) / 12)
            version_ms = []
            for _ in range(30):
                t = time.perf_counter()
                with engine.connect() as conn:
                    catalog.catalog_version(conn)
                version_ms.append((time.perf_counter() - t) * 1000)
            cat_ms = []
            for _ in range(30):
                t = time.perf_counter()
                with engine.connect() as conn:
                    catalog.category_names(conn)
                cat_ms.append((time.perf_counter() - t) * 1000)
            r = {"size": size, "p50_ms": pct(latencies, 50), "p95_ms": pct(latencies, 95), "p99_ms": pct(latencies, 99),
                 "hnsw_recall_at_12": float(np.mean(recalls)), "copy_s": copy_s, "index_build_s": index_s,
                 "catalog_version_p50_ms": pct(version_ms, 50), "category_names_p50_ms": pct(cat_ms, 50)}
            log(f"  p50 {r['p50_ms']:.2f} ms p95 {r['p95_ms']:.2f} ms recall@12 {r['hnsw_recall_at_12']:.3f}")
            results.append(r)
        engine.dispose()

    print()
    table(["catalog items", "query p50 ms", "p95 ms", "p99 ms", "HNSW recall@12 vs exact", "index build s",
           "catalog_version() ms", "category_names() ms"],
          [[r["size"], r["p50_ms"], r["p95_ms"], r["p99_ms"], r["hnsw_recall_at_12"], r["index_build_s"],
            r["catalog_version_p50_ms"], r["category_names_p50_ms"]] for r in results],
          title=f"Per-category query latency (PgVectorBackend.search, k=12, ef_search={EF_SEARCH}, {args.queries} "
                f"perturbed-image queries). SYNTHETIC catalog: {args.base} rendered demo descriptors + noise, not "
                f"rendered images")
    print()
    table(["embedding throughput", "images/s"], [[k, v] for k, v in rates.items()],
          title="Embedding throughput (1 process; import = render + decode + describe + upsert)")
    last = results[-1]
    summary = {}
    for r in results:
        label = f"{r['size'] // 1000}k" if r["size"] >= 1000 else str(r["size"])
        summary[f"p50_ms_{label}"] = r["p50_ms"]
        summary[f"p95_ms_{label}"] = r["p95_ms"]
    summary.update({"recall12_largest": last["hnsw_recall_at_12"], "describe_images_s": rates["decode_and_describe_per_s"],
               "import_images_s": rates["import_path_per_s"], "largest": last["size"],
               "target_met": last["p50_ms"] <= 50})
    write_results("search_speed", {"args": vars(args), "sizes": results, "embedding": rates, "summary": summary,
                                   "note": "catalog rows are synthetic (noisy copies of rendered demo descriptors)"})
    print(summary_line("search_speed", summary))


if __name__ == "__main__":
    main()
