"""The migrations and searchjobs.db.tables describe the same schema."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from searchjobs.db import schema
from searchjobs.db.tables import EMBEDDER_INDEX_PREFIX, metadata


def not_an_embedder_index(obj, name, type_, reflected, compare_to) -> bool:
    """Each embedder's HNSW index is made at run time, when the embedder is first recorded."""
    return not (type_ == "index" and (name or "").startswith(EMBEDDER_INDEX_PREFIX))


def test_migrations_match_the_table_definitions(runtime):
    with runtime.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True, "include_object": not_an_embedder_index})
        diff = compare_metadata(context, metadata)
    assert diff == []


def test_database_is_at_the_head_revision(settings, runtime):
    assert schema.current_revision(settings.database_url) == schema.head_revision()


@pytest.mark.parametrize("status, progress, categories", [
    ("lost", 0, ["dress"]),  # not a status
    ("pending", 101, ["dress"]),  # progress out of range
    ("pending", -1, ["dress"]),
    ("pending", 0, []),  # no category
])
def test_constraints_refuse_impossible_rows(runtime, status, progress, categories):
    insert = sa.text("INSERT INTO search_jobs (job_id, status, progress, categories) "
                     "VALUES ('x', :status, :progress, :categories)")
    with runtime.engine.connect() as conn, pytest.raises(sa.exc.IntegrityError):
        conn.execute(insert, {"status": status, "progress": progress, "categories": categories})
