"""A search backend plug-in for bench/throughput.py: a fixed hit list, no catalog, no SQL.

SEARCHJOBS_SEARCH_BACKEND=bench.trivial_backend:factory
"""

from __future__ import annotations

HITS = [
    {"sku": f"BENCH-{i:03d}", "name": f"Bench item {i}", "price": "19.99", "currency": "EUR",
     "score": round(1 - i / 100, 4), "image_url": f"https://example.invalid/{i}.png"}
    for i in range(12)
]


class TrivialBackend:
    name = "bench-trivial"

    def search(self, category, vector, k, embedder=None):
        return [dict(h) for h in HITS[:k]]

    def catalog_version(self) -> str:
        return "bench:0"


def factory(runtime) -> TrivialBackend:
    return TrivialBackend()
