"""Scheduler locks as lease rows, not session advisory locks.

One reconciler pass (and one cleanup) at a time across schedulers. A session
advisory lock needs its lock and unlock on one server connection, which
PgBouncer's transaction pooling does not promise; a row with a holder and an
expiry works through any pooler, holds no connection between statements, and
is taken over once a dead holder's lease runs out.

Revision ID: 0007
Revises: 0006
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "CREATE TABLE scheduler_locks ("
        " name text NOT NULL, holder text NOT NULL, expires_at timestamptz NOT NULL,"
        " CONSTRAINT pk_scheduler_locks PRIMARY KEY (name))"
    )


def downgrade() -> None:
    op.execute("DROP TABLE scheduler_locks")
