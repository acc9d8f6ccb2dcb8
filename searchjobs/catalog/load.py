"""Loading the catalog: the procedural demo catalog and CSV imports, embeddings computed in batches,
and reembedding the whole catalog with another embedder.

Imports upsert by sku, so running them again updates items instead of duplicating them. They write
vectors of the catalog's active embedder only (an empty catalog first switches to the one given).
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
from PIL import Image

from searchjobs import intake
from searchjobs.catalog import demo, descriptor
from searchjobs.catalog import store as catalog
from searchjobs.catalog.backends import vector_literal
from searchjobs.catalog.embedders import DESCRIPTOR_SPEC, DescriptorEmbedder, Embedder, Embedders
from searchjobs.errors import ConfigError, SearchJobsError

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


class EmbedderChanged(SearchJobsError):
    """The catalog switched to another embedder while an import ran."""

    code = "embedder_changed"


def register(conn: sa.Connection, embedder: Embedder) -> None:
    """Record the embedder and make its HNSW index; the same name with another dimension is refused."""
    recorded = catalog.register_embedder(conn, embedder.name, embedder.dimension, embedder.spec)
    if recorded != embedder.dimension:
        raise ConfigError(f"the embedder {embedder.name} ({embedder.spec}) gives {embedder.dimension} dimensions, "
                          f"but the catalog recorded it with {recorded}")
    catalog.embedder_index(conn, embedder.name)


def writing_embedder(engine: sa.Engine, embedders: Embedders) -> Embedder:
    """The embedder an import writes vectors with: the catalog's active one; the configured one when
    the catalog is empty (it then becomes the active one, as nothing is left to reembed)."""
    configured = embedders.configured
    with engine.begin() as conn:
        if catalog.active_embedder(conn).name == configured.name:
            return configured
        if catalog.count(conn) == 0:
            register(conn, configured)
            if catalog.switch_embedder(conn, configured.name):
                log.info("the empty catalog now uses the configured embedder", extra={"embedder": configured.name})
                return configured
    active = embedders.active(engine)
    log.warning("SEARCHJOBS_EMBEDDER is not the catalog's active embedder: new items get the active one's "
                "vectors (`searchjobs catalog reembed` switches)",
                extra={"configured": configured.name, "active": active.name})
    return active


def upsert_batch(engine: sa.Engine, rows: list[CatalogRow], embedder: Embedder) -> None:
    vectors = _vectors(rows, embedder)
    params = [
        {
            "sku": r.sku, "name": r.name, "category": r.category, "price": r.price, "currency": r.currency,
            "image_url": r.image_url, "image_data": r.image_data, "image_content_type": r.image_content_type,
            "attributes": json.dumps(r.attributes),
        }
        for r in rows
    ]
    with engine.begin() as conn:
        active = catalog.lock_active_embedder(conn)  # a switch waits for this batch, or this batch for it
        if active != embedder.name:
            raise EmbedderChanged(f"the catalog switched to the embedder {active} during the import "
                                  f"(this one embeds with {embedder.name}): run the import again")
        catalog.upsert(conn, params)
        catalog.upsert_embeddings(conn, embedder.name, [
            {"sku": r.sku, "embedding": vector_literal(v)} for r, v in zip(rows, vectors, strict=True)])


def _vectors(rows: list[CatalogRow], embedder: Embedder) -> list[np.ndarray]:
    """The demo's pool computes our descriptor as it draws each item: those vectors serve when it is the
    writing embedder; any other embeds the images here (decoded from the stored bytes if need be)."""
    if embedder.spec == DESCRIPTOR_SPEC and all(r.vector is not None for r in rows):
        return [r.vector for r in rows]
    images = [r.image if r.image is not None else decode(r.image_data, r.image_content_type) for r in rows]
    return list(embedder.embed_many(images))


def decode(data: bytes, content_type: str | None = None, limits: intake.IntakeLimits | None = None) -> Image.Image:
    """A catalog image's bytes decoded exactly as a query photo's are (``intake.open_image``: EXIF
    orientation, and a big photo at a reduced scale), so the same file gives the same vector either way."""
    validated = intake.validate_image_bytes(data, content_type, limits or intake.IntakeLimits())
    return intake.open_image(validated)


def describe_bytes(data: bytes, content_type: str | None = None) -> np.ndarray:
    """Our descriptor of image bytes, through the query path's decode (raises intake.ImageError)."""
    return descriptor.describe(decode(data, content_type))


def _batches(rows: Iterable[CatalogRow], size: int) -> Iterator[list[CatalogRow]]:
    batch: list[CatalogRow] = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def load_rows(engine: sa.Engine, rows: Iterable[CatalogRow], on_batch: Callable[[int], None] | None = None,
              embedders: Embedders | None = None) -> int:
    """Upsert `rows` in batches; `embedders` holds the configured embedder (default: the descriptor)."""
    embedder = writing_embedder(engine, embedders or Embedders(DescriptorEmbedder()))
    loaded = 0
    for batch in _batches(rows, EMBED_BATCH):
        upsert_batch(engine, batch, embedder)
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
              processes: int | None = None, embedders: Embedders | None = None) -> int:
    return load_rows(engine, demo_rows(size, seed, processes), on_batch, embedders)


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
               on_batch: Callable[[int], None] | None = None, embedders: Embedders | None = None) -> ImportReport:
    report = ImportReport()
    report.loaded = load_rows(engine, csv_rows(path, report, limits), on_batch, embedders)
    return report


@dataclass
class ReembedReport:
    embedder: str
    items: int = 0  # in the catalog when the run started
    already: int = 0  # of them with a vector from the embedder before this run (a resumed run)
    embedded: int = 0  # vectors this run computed
    failed: dict[str, str] = field(default_factory=dict)  # sku -> why its image could not be embedded
    switched: bool = False  # this run made the embedder the active one
    active: str = ""  # the active embedder when the run ended


def _item_image(row: dict, limits: intake.IntakeLimits):
    if row["image_data"] is not None:
        return decode(row["image_data"], row["image_content_type"], limits)
    if row["image_url"]:
        return intake.open_image(intake.fetch_image(row["image_url"], limits))
    raise ValueError("the item has no image")


def reembed(engine: sa.Engine, embedder: Embedder, limits: intake.IntakeLimits, batch: int = EMBED_BATCH,
            on_start: Callable[[int, int], None] | None = None,
            on_batch: Callable[[int], None] | None = None) -> ReembedReport:
    """Give every item a vector from `embedder`, then make it the active embedder.

    The vectors go beside the active embedder's, which keep serving searches until the switch.
    Every batch commits on its own and the next batch is whatever still lacks a vector, so a run that
    was interrupted (Ctrl-C, a kill) continues where it stopped. Items added or changed during the run
    are picked up by another pass; the switch happens, atomically, only once none lacks a vector.
    `on_start(items, already_done)` and `on_batch(items_done)` report progress.
    """
    with engine.begin() as conn:
        register(conn, embedder)
    with engine.connect() as conn:
        items, already = catalog.embedding_progress(conn, embedder.name)
    report = ReembedReport(embedder=embedder.name, items=items, already=already)
    if on_start:
        on_start(items, already)
    after = 0  # items are visited by id; each pass goes from the lowest id still lacking a vector
    while True:
        with engine.connect() as conn:
            rows = catalog.missing_embeddings(conn, embedder.name, after, batch)
        if rows:
            after = rows[-1]["id"]
            _reembed_batch(engine, embedder, rows, limits, report)
            if on_batch:
                on_batch(len(rows))
            continue
        with engine.begin() as conn:  # a pass ended
            report.switched = not report.failed and catalog.switch_embedder(conn, embedder.name)
            report.active = catalog.active_embedder(conn).name
        if report.failed or report.active == embedder.name:
            return report
        after = 0  # items arrived or changed during the pass: another pass for them


def _reembed_batch(engine: sa.Engine, embedder: Embedder, rows: list[dict], limits: intake.IntakeLimits,
                   report: ReembedReport) -> None:
    images, readable = [], []
    for row in rows:
        try:
            images.append(_item_image(row, limits))
            readable.append(row)
        except (ValueError, intake.ImageError) as exc:
            report.failed[row["sku"]] = str(exc)
    if not readable:
        return
    vectors = embedder.embed_many(images)
    with engine.begin() as conn:
        catalog.add_embeddings(conn, embedder.name, [
            {"item_id": r["id"], "updated_at": r["updated_at"], "embedding": vector_literal(v)}
            for r, v in zip(readable, vectors, strict=True)])
    report.embedded += len(readable)
