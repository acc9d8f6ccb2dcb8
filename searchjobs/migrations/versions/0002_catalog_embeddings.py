"""Catalog embeddings: pgvector column with an HNSW cosine index.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

EMBEDDING_DIM = 256  # searchjobs.jobs.features.DESCRIPTOR_DIM when this migration was written


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS vector")
    op.execute(f"ALTER TABLE catalog_items ADD COLUMN embedding vector({EMBEDDING_DIM})")
    op.execute(
        "CREATE INDEX ix_catalog_items_embedding_hnsw ON catalog_items "
        "USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64)"
    )


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_catalog_items_embedding_hnsw")
    op.execute("ALTER TABLE catalog_items DROP COLUMN IF EXISTS embedding")
