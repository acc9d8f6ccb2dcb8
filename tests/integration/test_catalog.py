"""The catalog: CSV import (upsert by sku, bad rows reported and skipped), demo catalog, per-category search."""

from __future__ import annotations

import numpy as np
import sqlalchemy as sa
from click.testing import CliRunner

from searchjobs.catalog import descriptor, load
from searchjobs.catalog.backends import PgVectorBackend
from searchjobs.cli import main
from tests.conftest import TEST_CATALOG_SIZE, demo_image_bytes


def cli_env(settings) -> dict:
    return {"DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url, "SECRET_KEY": "x"}


def test_search_returns_only_the_requested_category(runtime):
    backend = PgVectorBackend(runtime.db, "http://testserver")
    vector = load.describe_bytes(demo_image_bytes(0, "dress"))
    with runtime.engine.connect() as conn:
        categories = [r[0] for r in conn.execute(sa.text("SELECT DISTINCT category FROM catalog_items"))]
    for category in categories:
        hits = backend.search(category, vector, 5)
        with runtime.engine.connect() as conn:
            actual = {r[0] for r in conn.execute(sa.text("SELECT category FROM catalog_items WHERE sku = ANY(:s)"),
                                                 {"s": [h["sku"] for h in hits]})}
        assert len(hits) == 5 and actual == {category}
    assert backend.search("no-such-category", vector, 5) == []


def test_catalog_import_upserts_and_reports_bad_rows(tmp_path, settings, runtime):
    (tmp_path / "a.png").write_bytes(demo_image_bytes(0, "hat"))
    (tmp_path / "b.png").write_bytes(demo_image_bytes(1, "hat"))
    (tmp_path / "notes.txt").write_text("not an image")
    csv = tmp_path / "catalog.csv"
    csv.write_text(
        "sku,name,category,price,image\n"
        "IMP-1,Straw Hat,Hat,19.90,a.png\n"
        "IMP-2,Felt Hat,hat,EUR 45,b.png\n"
        "IMP-3,Broken,hat,12.00,notes.txt\n"  # line 4: not an image
        "IMP-4,No Price,hat,free,a.png\n"  # line 5: bad price
        ",No Sku,hat,10,a.png\n"  # line 6: no sku
        "IMP-5,Missing,hat,10,missing.png\n"  # line 7: no such file
    )
    result = CliRunner().invoke(main, ["catalog", "import", str(csv)], env=cli_env(settings))
    assert result.exit_code == 0, result.output
    assert "2 items imported, 4 rows skipped" in result.output
    for line in (4, 5, 6, 7):
        assert f"line {line}: skipped" in result.output
    with runtime.engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT sku, i.category, price, e.embedder = :active FROM catalog_items i "
            "JOIN catalog_embeddings e ON e.item_id = i.id WHERE sku LIKE 'IMP-%' ORDER BY sku"),
            {"active": descriptor.DESCRIPTOR_VERSION}).all()
    assert [(r[0], r[1], str(r[2]), r[3]) for r in rows] == [("IMP-1", "hat", "19.90", True),
                                                          ("IMP-2", "hat", "45.00", True)]
    csv.write_text("sku,name,category,price,image\nIMP-1,Straw Hat (new),hat,21.00,a.png\n")
    result = CliRunner().invoke(main, ["catalog", "import", str(csv)], env=cli_env(settings))
    assert "1 items imported, 0 rows skipped" in result.output
    with runtime.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT name, price FROM catalog_items WHERE sku = 'IMP-1'")).one() == \
            ("Straw Hat (new)", 21)
        conn.execute(sa.text("DELETE FROM catalog_items WHERE sku LIKE 'IMP-%'"))
        conn.commit()


def test_catalog_import_refuses_a_csv_without_the_columns(tmp_path, settings, runtime):
    csv = tmp_path / "bad.csv"
    csv.write_text("id,title\n1,x\n")
    result = CliRunner().invoke(main, ["catalog", "import", str(csv)], env=cli_env(settings))
    assert result.exit_code == 2 and "lacks columns" in result.output


def test_demo_catalog_embeddings_are_the_descriptor_of_their_images(runtime):
    from searchjobs.catalog import demo

    item = next(demo.generate_items(TEST_CATALOG_SIZE, seed=7))
    with runtime.engine.connect() as conn:
        stored, version, attributes = conn.execute(sa.text(
            "SELECT e.embedding::text, e.embedder, attributes FROM catalog_items i "
            "JOIN catalog_embeddings e ON e.item_id = i.id WHERE sku = :s"),
            {"s": item.sku}).one()
    vector = np.array([float(x) for x in stored.strip("[]").split(",")], dtype=np.float32)
    assert version == descriptor.DESCRIPTOR_VERSION and attributes["demo"] is True
    assert np.allclose(vector, load.describe_bytes(item.image_png), atol=1e-5)


def test_catalog_demo_command_loads_a_labelled_demo_catalog_and_upserts(settings, runtime):
    env = cli_env(settings)
    # the session's own seed: the same 20 items are rewritten in place, the shared catalog stays as it was
    result = CliRunner().invoke(main, ["catalog", "demo", "--size", "20", "--seed", "7"], env=env)
    assert result.exit_code == 0, result.output
    assert "Demo catalog: 20 items loaded" in result.output
    with runtime.engine.connect() as conn:
        def demo_rows():
            return conn.execute(sa.text(
                "SELECT count(*), count(DISTINCT category) FROM catalog_items "
                "WHERE attributes->>'source' = 'Demo catalog' AND sku LIKE 'DEMO-%'")).one()
        before = demo_rows()
        assert before == (TEST_CATALOG_SIZE, 10)
        assert CliRunner().invoke(main, ["catalog", "demo", "--size", "20", "--seed", "7"], env=env).exit_code == 0
        assert demo_rows() == before  # same skus: updated in place, not duplicated
    result = CliRunner().invoke(main, ["catalog", "demo", "--size", "0"], env=env)
    assert result.exit_code == 2 and "Invalid value" in result.output
