"""The change feed reads events in (transaction, id) order: an index for it.

Revision ID: 0009
Revises: 0008
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE INDEX ix_search_job_events_tx_id_id ON search_job_events (tx_id, id)")


def downgrade() -> None:
    op.execute("DROP INDEX ix_search_job_events_tx_id_id")
