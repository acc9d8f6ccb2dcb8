"""Deleted jobs are remembered for one cache lifetime, so their tombstones survive a refused write.

A DELETE (or the retention cleanup) writes a tombstone over the job's cached
view. If Redis refused that write (full, read-only), the old view would be
served until it expired; the reconciler re-writes the tombstones of jobs
deleted since its last pass from this table, and the cleanup forgets rows
older than the cache TTL.

Revision ID: 0006
Revises: 0005
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "CREATE TABLE job_deletions ("
        " job_id text NOT NULL, result_token_hash text,"
        " deleted_at timestamptz NOT NULL DEFAULT now(),"
        " CONSTRAINT pk_job_deletions PRIMARY KEY (job_id))"
    )
    op.execute("CREATE INDEX ix_job_deletions_deleted_at ON job_deletions (deleted_at)")


def downgrade() -> None:
    op.execute("DROP TABLE job_deletions")
