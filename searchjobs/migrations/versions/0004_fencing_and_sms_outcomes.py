"""Fencing tokens per claim, and what the SMS outbox needs to never send twice.

- `search_jobs.claim_token`: a fresh UUID at every claim. Every write of that
  attempt names it in its WHERE clause, so nothing but that attempt (not a
  manual retry that reset `attempts`, not a requeue by the reconciler) can
  ever be taken for one of its writes.
- `notifications.body_sha256`: the hash of the exact text sent at the first
  claim; a provider look-up matches on it, so a changed SECRET_KEY or
  PUBLIC_BASE_URL cannot make a resend look new.
- `notifications.give_up_at`: the deadline after which a row stops being
  retried (a time, not a count of attempts).
- an index on `search_jobs.updated_at`: the reconciler re-writes the cached
  views of rows changed since its last pass.

Revision ID: 0004
Revises: 0003
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE search_jobs ADD COLUMN claim_token uuid")
    op.execute("CREATE INDEX ix_search_jobs_updated_at ON search_jobs (updated_at)")
    op.execute("ALTER TABLE notifications ADD COLUMN body_sha256 text")
    op.execute("ALTER TABLE notifications ADD COLUMN give_up_at timestamptz")


def downgrade() -> None:
    op.execute("ALTER TABLE notifications DROP COLUMN give_up_at")
    op.execute("ALTER TABLE notifications DROP COLUMN body_sha256")
    op.execute("DROP INDEX ix_search_jobs_updated_at")
    op.execute("ALTER TABLE search_jobs DROP COLUMN claim_token")
