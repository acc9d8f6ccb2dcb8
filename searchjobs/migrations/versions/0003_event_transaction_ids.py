"""Events remember the transaction that wrote them, so the change feed never skips one.

Event ids come from a sequence at INSERT time, but transactions commit in any
order: a reader at cursor N could see N+1 committed while N is still in flight,
and then never see N. The feed only returns events written by transactions
older than every transaction still running (pg_snapshot_xmin).

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # xid8 as bigint (64-bit, wraparound-free): SQLAlchemy knows bigint, not xid8
    op.execute(
        "ALTER TABLE search_job_events ADD COLUMN tx_id bigint NOT NULL "
        "DEFAULT (pg_current_xact_id()::text)::bigint"
    )


def downgrade() -> None:
    op.execute("ALTER TABLE search_job_events DROP COLUMN tx_id")
