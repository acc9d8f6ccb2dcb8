"""The demo catalog rendered in a process pool: the same rows, byte for byte, whatever the pool size."""

from __future__ import annotations

import numpy as np

from searchjobs.catalog import demo
from searchjobs.catalog.load import DEMO_CHUNK, demo_rows, describe_bytes

SIZE = 3 * DEMO_CHUNK + 7  # several chunks, the last one short
SEED = 11


def _fingerprint(rows) -> list[tuple]:
    return [(r.sku, r.name, r.category, r.price, r.image_data, r.attributes, r.vector.tobytes()) for r in rows]


def test_same_seed_same_rows_whatever_the_number_of_processes():
    alone = _fingerprint(demo_rows(SIZE, SEED, processes=1))
    assert len(alone) == SIZE and [sku for sku, *_ in alone] == [i.sku for i in demo.generate_items(SIZE, SEED)]
    for processes in (2, 3):
        assert _fingerprint(demo_rows(SIZE, SEED, processes=processes)) == alone, f"{processes} processes differ"


def test_each_row_is_its_item_and_the_descriptor_of_its_stored_png():
    items = list(demo.generate_items(DEMO_CHUNK + 2, SEED))
    rows = list(demo_rows(DEMO_CHUNK + 2, SEED, processes=2))
    for item, row in zip(items, rows, strict=True):
        assert row.image_data == item.image_png and row.attributes["source"] == demo.DEMO_LABEL
        # described before encoding, yet the same vector as the query path gets from the PNG
        assert np.array_equal(row.vector, describe_bytes(item.image_png))


def test_an_empty_catalog_has_no_rows():
    assert list(demo_rows(0, SEED, processes=2)) == []
