"""The reconciler's steady pass asks for the due pending jobs that changed since its last pass: rows
updated since (ix_search_jobs_updated_at) or retries whose run_after came since. run_after had no index,
so the OR read every pending row (a scan of the whole queue, each pass); a partial index on the pending
rows' run_after lets it combine two index scans.

Revision ID: 0011
Revises: 0010
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE INDEX ix_search_jobs_pending_run_after ON search_jobs (run_after) WHERE status = 'pending'")


def downgrade() -> None:
    op.execute("DROP INDEX ix_search_jobs_pending_run_after")
