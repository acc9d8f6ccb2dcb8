"""Bring your own embedding model: reembed the catalog with an ONNX encoder (built in the test with
onnx.helper, no weights downloaded), switch, and search through a real worker with the new vectors."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import sqlalchemy as sa
from PIL import Image

from searchjobs.catalog import descriptor
from searchjobs.catalog import store as catalog
from searchjobs.catalog.embedders import DescriptorEmbedder, Embedders, load_embedder
from searchjobs.catalog.load import reembed
from searchjobs.intake import IntakeLimits
from tests.conftest import TEST_CATALOG_SIZE, demo_image_bytes, wait_for
from tests.integration.test_core_loop import row_of, submit_upload
from tests.onnx_models import average_pool_model

LIMITS = IntakeLimits()


def parse(text: str) -> np.ndarray:
    return np.array([float(x) for x in text.strip("[]").split(",")], dtype=np.float32)


@pytest.fixture
def onnx_model(tmp_path, runtime):
    """A tiny 32-dimension encoder; afterwards the catalog is as the session loaded it: the same active
    embedder, and no embedder, vector or index that the test added."""
    with runtime.engine.connect() as conn:
        active = catalog.active_embedder(conn).name
        known = set(conn.execute(sa.text("SELECT name FROM catalog_embedders")).scalars())
    yield average_pool_model(tmp_path / "encoder.onnx")
    with runtime.engine.begin() as conn:
        conn.execute(sa.text("UPDATE catalog_state SET active_embedder = :a"), {"a": active})
        added = conn.execute(sa.text("SELECT id FROM catalog_embedders WHERE NOT name = ANY(:k)"),
                             {"k": list(known)}).scalars().all()
        for embedder_id in added:
            conn.execute(sa.text(f"DROP INDEX IF EXISTS ix_catalog_embeddings_hnsw_{int(embedder_id)}"))
        conn.execute(sa.text("DELETE FROM catalog_embedders WHERE NOT name = ANY(:k)"), {"k": list(known)})


def stored_vectors(runtime, embedder: str) -> dict[str, np.ndarray]:
    with runtime.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT i.sku, e.embedding::text FROM catalog_embeddings e "
                                    "JOIN catalog_items i ON i.id = e.item_id WHERE e.embedder = :e"), {"e": embedder})
        return {sku: parse(text) for sku, text in rows}


def test_reembed_switches_and_a_worker_searches_with_the_new_vectors(client, runtime, run_jobs, onnx_model):
    embedder = load_embedder(f"onnx:{onnx_model}")
    with runtime.engine.connect() as conn:
        version_before = catalog.catalog_version(conn)
    assert version_before.startswith(f"{descriptor.DESCRIPTOR_VERSION}:")
    before = submit_upload(client, categories="dress").get_json()["job_id"]
    run_jobs()

    report = reembed(runtime.engine, embedder, LIMITS, batch=16)
    assert (report.items, report.already, report.embedded, report.failed) == (TEST_CATALOG_SIZE, 0, TEST_CATALOG_SIZE, {})
    assert report.switched and report.active == embedder.name
    with runtime.engine.connect() as conn:
        assert catalog.active_embedder(conn).name == embedder.name
        version_after = catalog.catalog_version(conn)
    assert version_after != version_before and version_after.startswith(f"{embedder.name}:")
    # the descriptor's vectors are still there (a switch back needs no recomputation), and untouched
    assert len(stored_vectors(runtime, descriptor.DESCRIPTOR_VERSION)) == TEST_CATALOG_SIZE

    # the runtime was configured with the descriptor: the worker loads the active model from its spec
    assert runtime.embedders.configured.name == descriptor.DESCRIPTOR_VERSION
    job_id = submit_upload(client, categories="dress").get_json()["job_id"]
    run_jobs()
    row = row_of(runtime, job_id)
    assert row["status"] == "completed", row["error"]
    with runtime.engine.connect() as conn:
        detail = conn.execute(sa.text("SELECT detail FROM search_job_events WHERE job_id = :j AND stage = 'features'"),
                              {"j": job_id}).scalar_one()
    assert detail == {"embedder": embedder.name}
    assert row["results"]["catalog_version"] == version_after
    assert row_of(runtime, before)["results"]["catalog_version"] == version_before

    # the scores are cosines with the new vectors
    new_vectors = stored_vectors(runtime, embedder.name)
    query = embedder.embed(Image.open(io.BytesIO(demo_image_bytes(0, "dress"))).convert("RGB"))
    hits = row["results"]["categories"]["dress"]
    assert hits[0]["sku"] == "DEMO-DRS-000000" and hits[0]["score"] == 1.0  # the uploaded item itself
    for hit in hits:
        assert abs(hit["score"] - float(query @ new_vectors[hit["sku"]])) < 1e-3


def test_a_search_never_compares_vectors_of_another_embedder(runtime, onnx_model, tmp_path):
    first = load_embedder(f"onnx:{onnx_model}")
    second = load_embedder(f"onnx:{average_pool_model(tmp_path / 'other.onnx', seed=1)}")  # also 32 dimensions
    assert reembed(runtime.engine, first, LIMITS).switched
    assert not reembed(runtime.engine, first, LIMITS).switched  # already active: nothing to do
    assert reembed(runtime.engine, second, LIMITS).switched
    # an item whose `first` vector is gone, and whose `second` vector is exactly the query
    vectors = stored_vectors(runtime, first.name)
    target = "DEMO-DRS-000010"
    probe = vectors["DEMO-DRS-000000"]
    literal = "[" + ",".join(f"{x:.7g}" for x in probe) + "]"
    with runtime.engine.begin() as conn:
        item_id = conn.execute(sa.text("SELECT id FROM catalog_items WHERE sku = :s"), {"s": target}).scalar_one()
        conn.execute(sa.text("DELETE FROM catalog_embeddings WHERE item_id = :i AND embedder = :e"),
                     {"i": item_id, "e": first.name})
        conn.execute(sa.text("UPDATE catalog_embeddings SET embedding = CAST(:v AS vector) "
                             "WHERE item_id = :i AND embedder = :e"), {"i": item_id, "v": literal, "e": second.name})
    with runtime.db.connect() as conn:
        with_first = [r.sku for r in catalog.nearest(conn, "dress", literal, 12, 100, embedder=first.name)]
        with_second = [r.sku for r in catalog.nearest(conn, "dress", literal, 12, 100, embedder=second.name)]
        wrong = f"the query vector has 32 dimensions, {descriptor.DESCRIPTOR_VERSION} vectors have {descriptor.DESCRIPTOR_DIM}"
        with pytest.raises(sa.exc.DBAPIError, match=wrong):
            catalog.nearest(conn, "dress", literal, 5, 100, embedder=descriptor.DESCRIPTOR_VERSION)
    assert target not in with_first and with_first[0] == "DEMO-DRS-000000" and len(with_first) == 11
    assert with_second[0] == target


def test_an_interrupted_reembed_resumes_where_it_stopped(runtime, onnx_model):
    embedder = load_embedder(f"onnx:{onnx_model}")
    batches = []

    def interrupt_after_three(n):
        batches.append(n)
        if len(batches) == 3:
            raise KeyboardInterrupt  # what Ctrl-C raises between two batches

    with pytest.raises(KeyboardInterrupt):
        reembed(runtime.engine, embedder, LIMITS, batch=10, on_batch=interrupt_after_three)
    with runtime.engine.connect() as conn:
        assert catalog.embedding_progress(conn, embedder.name) == (TEST_CATALOG_SIZE, 30)
        assert catalog.active_embedder(conn).name == descriptor.DESCRIPTOR_VERSION  # the old vectors still serve

    started = []
    report = reembed(runtime.engine, embedder, LIMITS, batch=10, on_start=lambda *a: started.append(a))
    assert started == [(TEST_CATALOG_SIZE, 30)]
    assert report.embedded == TEST_CATALOG_SIZE - 30 and report.switched


def test_an_import_during_a_reembed_is_embedded_before_the_switch(runtime, onnx_model):
    from searchjobs.catalog.load import load_demo

    embedder = load_embedder(f"onnx:{onnx_model}")

    def import_in_the_middle(n):
        if not imported:
            imported.append(load_demo(runtime.engine, 3, seed=7))  # rewrites 3 items: their new vectors go

    imported: list[int] = []
    report = reembed(runtime.engine, embedder, LIMITS, batch=50, on_batch=import_in_the_middle)
    assert imported == [3] and report.switched
    assert report.embedded == TEST_CATALOG_SIZE + 3  # the rewritten items were embedded again
    assert len(stored_vectors(runtime, embedder.name)) == TEST_CATALOG_SIZE


def test_a_worker_that_cannot_load_the_active_model_puts_the_job_back(client, runtime, run_jobs, onnx_model):
    embedder = load_embedder(f"onnx:{onnx_model}")
    assert reembed(runtime.engine, embedder, LIMITS).switched
    onnx_model.rename(onnx_model.with_suffix(".moved"))
    runtime.__dict__["embedders"] = Embedders(DescriptorEmbedder())  # a fresh worker on another machine
    job_id = submit_upload(client, categories="dress").get_json()["job_id"]
    run_jobs()
    row = row_of(runtime, job_id)
    assert (row["status"], row["error_code"]) == ("pending", "dependency_unavailable"), row
    assert row["results"] is None


def test_the_reembed_command_resumes_after_a_kill(settings, runtime, onnx_model):
    """A real `searchjobs catalog reembed` process, killed with SIGKILL while a batch waits on a row
    lock the test holds; the next run continues from the batches it committed."""
    env = {**os.environ, "DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url,
           "PYTHONPATH": os.getcwd(), "COLUMNS": "120"}
    command = [sys.executable, "-m", "searchjobs", "catalog", "reembed", "--embedder", f"onnx:{onnx_model}",
               "--batch", "10"]
    name = load_embedder(f"onnx:{onnx_model}").name
    with runtime.engine.connect() as holder:
        # the 45th item: the embeddings' foreign key check of the fifth batch waits for this lock (taken
        # by id: FOR UPDATE with an OFFSET would lock the rows it skips too)
        item_id = holder.execute(sa.text("SELECT id FROM catalog_items ORDER BY id OFFSET 44 LIMIT 1")).scalar_one()
        holder.execute(sa.text("SELECT 1 FROM catalog_items WHERE id = :i FOR UPDATE"), {"i": item_id})
        process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

        def four_batches_in_and_waiting():
            with runtime.engine.connect() as conn:
                done = catalog.embedding_progress(conn, name)[1]
                waiting = conn.execute(sa.text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                               "AND query LIKE 'INSERT INTO catalog_embeddings%'")).scalar_one()
            return done == 40 and waiting == 1

        try:
            wait_for(four_batches_in_and_waiting, 60, "four committed batches and a fifth waiting")
        finally:
            process.send_signal(signal.SIGKILL)
            output = process.communicate(timeout=10)[0].decode()
            holder.rollback()
        assert process.returncode == -signal.SIGKILL, output
    with runtime.engine.connect() as conn:
        assert catalog.active_embedder(conn).name == descriptor.DESCRIPTOR_VERSION
    resumed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"Resuming: 40 of {TEST_CATALOG_SIZE} items already have a vector from {name}" in resumed.stdout
    assert f"{TEST_CATALOG_SIZE - 40} vectors computed with {name}" in resumed.stdout
    assert f"searches now use {name}" in resumed.stdout
    with runtime.engine.connect() as conn:
        assert catalog.active_embedder(conn).name == name


def test_the_release_step_brings_the_catalog_to_this_releases_embedder(settings, runtime, onnx_model):
    """A deploy whose embedder differs from the one the catalog's vectors come from (as after a descriptor
    version change): the Procfile's `searchjobs release` migrates, then reembeds and switches, so the new
    release's workers can search; run again, it has nothing to do."""
    other = load_embedder(f"onnx:{onnx_model}")
    assert reembed(runtime.engine, other, LIMITS).switched
    env = {**os.environ, "DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url,
           "PYTHONPATH": os.getcwd(), "COLUMNS": "120", "SEARCHJOBS_EMBEDDER": "descriptor"}
    command = [sys.executable, "-m", "searchjobs", "release"]
    first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "database at" in first.stdout
    assert (f"The catalog's vectors come from {other.name}; searches use {descriptor.DESCRIPTOR_VERSION}"
            in first.stdout), first.stdout
    assert f"searches now use {descriptor.DESCRIPTOR_VERSION}" in first.stdout
    with runtime.engine.connect() as conn:
        assert catalog.active_embedder(conn).name == descriptor.DESCRIPTOR_VERSION
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "reembedding" not in again.stdout and "database at" in again.stdout
