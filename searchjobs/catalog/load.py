"""Loading the catalog: the procedural demo catalog and CSV imports, embeddings computed in batches.

Both upsert by sku, so running them again updates items instead of duplicating them.
"""

from __future__ import annotations

import csv
import json
import logging
import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path

import numpy as np
import sqlalchemy as sa

from searchjobs import intake
from searchjobs.catalog import demo, descriptor
from searchjobs.catalog import store as catalog
from searchjobs.catalog.backends import vector_literal

log = logging.getLogger(__name__)

EMBED_BATCH = 64  # images described and written per batch
DEMO_CHUNK = 20  # demo items a pool process renders and describes per task
DEMO_POOL_MIN_ITEMS = 400  # below this, starting processes (~0.5 s each) costs more than it saves
CSV_COLUMNS = ("sku", "name", "category", "price", "image")
MAX_SKU_LENGTH = 100  # characters
CURRENCY_DEFAULT = "EUR"


@dataclass
class CatalogRow:
    sku: str
    name: str
    category: str
    price: Decimal
    currency: str
    image_data: bytes | None
    image_content_type: str | None
    image_url: str | None
    attributes: dict
    image: object  # a decoded PIL image, to describe (None when `vector` is given)
    vector: np.ndarray | None = None  # its descriptor, when already computed


@dataclass
class ImportReport:
    loaded: int = 0
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (line number, reason)


def upsert_batch(engine: sa.Engine, rows: list[CatalogRow]) -> None:
    vectors = [r.vector if r.vector is not None else descriptor.describe(r.image) for r in rows]
    params = [
        {
            "sku": r.sku, "name": r.name, "category": r.category, "price": r.price, "currency": r.currency,
            "image_url": r.image_url, "image_data": r.image_data, "image_content_type": r.image_content_type,
            "attributes": json.dumps(r.attributes), "embedding": vector_literal(v),
            "embedding_version": descriptor.DESCRIPTOR_VERSION,
        }
        for r, v in zip(rows, vectors, strict=True)
    ]
    with engine.begin() as conn:
        catalog.upsert(conn, params)


def _batches(rows: Iterable[CatalogRow], size: int) -> Iterator[list[CatalogRow]]:
    batch: list[CatalogRow] = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def load_rows(engine: sa.Engine, rows: Iterable[CatalogRow], on_batch: Callable[[int], None] | None = None) -> int:
    loaded = 0
    for batch in _batches(rows, EMBED_BATCH):
        upsert_batch(engine, batch)
        loaded += len(batch)
        if on_batch:
            on_batch(len(batch))
    return loaded


def demo_rows(size: int, seed: int = 0, processes: int | None = None) -> Iterator[CatalogRow]:
    """The demo catalog's rows, in order, rendered and described by `processes` processes (default: one
    per usable core, or this process alone for a small catalog). Each item depends on (seed, index)
    only, so the rows are the same, byte for byte, whatever the number of processes."""
    if processes is None:
        processes = len(os.sched_getaffinity(0)) if size >= DEMO_POOL_MIN_ITEMS else 1
    chunks = [(start, min(start + DEMO_CHUNK, size), seed) for start in range(0, size, DEMO_CHUNK)]
    if processes <= 1 or len(chunks) <= 1:
        for chunk in chunks:
            yield from _demo_chunk(chunk)
        return
    # spawn, not fork: a forked child would share the parent's pooled database connections and the
    # threads of its progress display
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=processes, mp_context=context) as pool:
        for rows in pool.map(_demo_chunk, chunks):
            yield from rows


def _demo_chunk(chunk: tuple[int, int, int]) -> list[CatalogRow]:
    """Rows start..stop-1 of the demo catalog of `seed`, described (run in the pool's processes)."""
    start, stop, seed = chunk
    rows = []
    for index in range(start, stop):
        item, image = demo.item_and_image(index, seed)
        rows.append(CatalogRow(
            sku=item.sku, name=item.name, category=item.category, price=item.price, currency=item.currency,
            image_data=item.image_png, image_content_type="image/png", image_url=None,
            attributes={**item.attributes, "demo": True, "source": demo.DEMO_LABEL},
            image=None, vector=descriptor.describe(image),
        ))
    return rows


def load_demo(engine: sa.Engine, size: int, seed: int = 0, on_batch: Callable[[int], None] | None = None,
              processes: int | None = None) -> int:
    return load_rows(engine, demo_rows(size, seed, processes), on_batch)


def _parse_price(raw: str) -> tuple[Decimal, str]:
    """"19.99", "19.99 EUR" or "EUR 19.99"."""
    parts = raw.replace(",", ".").split()
    currency = CURRENCY_DEFAULT
    amount = None
    for part in parts:
        if part.isalpha() and len(part) == 3:
            currency = part.upper()
        else:
            amount = part
    try:
        price = Decimal(amount)
    except (InvalidOperation, TypeError):
        raise ValueError(f"price {raw!r} is not a number") from None
    if not price.is_finite() or price < 0 or price >= Decimal("1e10"):
        raise ValueError(f"price {raw!r} is out of range")
    return price.quantize(Decimal("0.01")), currency


def _read_image(ref: str, base_dir: Path, limits: intake.IntakeLimits) -> tuple[intake.ValidatedImage, str | None]:
    if ref.startswith(("http://", "https://")):
        return intake.fetch_image(ref, limits), ref
    path = (base_dir / ref).resolve()
    if not path.is_file():
        raise ValueError(f"image file {ref!r} not found")
    return intake.validate_image_bytes(path.read_bytes(), None, limits), None


def csv_rows(path: Path, report: ImportReport, limits: intake.IntakeLimits) -> Iterator[CatalogRow]:
    """Good rows of a catalog CSV; bad ones are recorded in `report` with their line number and skipped."""
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"the CSV header lacks columns: {', '.join(missing)} (expected {','.join(CSV_COLUMNS)})")
        for record in reader:
            line = reader.line_num
            try:
                sku = (record["sku"] or "").strip()
                name = (record["name"] or "").strip()
                category = (record["category"] or "").strip().lower()
                if not sku or len(sku) > MAX_SKU_LENGTH:
                    raise ValueError("sku is empty or too long")
                if not name:
                    raise ValueError("name is empty")
                if not category or len(category) > 40:
                    raise ValueError("category is empty or too long")
                price, currency = _parse_price((record["price"] or "").strip())
                validated, url = _read_image((record["image"] or "").strip(), path.parent, limits)
                image = intake.open_image(validated)
            except (ValueError, intake.ImageError) as exc:
                report.skipped.append((line, str(exc)))
                continue
            yield CatalogRow(
                sku=sku, name=name, category=category, price=price, currency=currency,
                image_data=None if url else validated.data, image_content_type=validated.content_type,
                image_url=url, attributes={}, image=image,
            )


def import_csv(engine: sa.Engine, path: Path, limits: intake.IntakeLimits,
               on_batch: Callable[[int], None] | None = None) -> ImportReport:
    report = ImportReport()
    report.loaded = load_rows(engine, csv_rows(path, report, limits), on_batch)
    return report
