"""Until when the last SMS create request may still land at the provider.

- `notifications.may_land_until`: written with `last_send_at` just before each create request
  (now + the sender's start grace + its connect and read timeouts + SEARCHJOBS_SMS_LOOKUP_MARGIN, by
  the settings of the process that sends), and moved later when that request's failure is recorded
  (now + timeouts + margin: a request that started late cannot shorten the wait). A look-up is
  conclusive only after it, so a worker with a shorter TWILIO_TIMEOUT cannot cut another's wait short.

Rows from before stay NULL: the reader then bounds the wait from `last_send_at` with its own settings,
as the previous code did.

Revision ID: 0008
Revises: 0007
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE notifications ADD COLUMN may_land_until timestamptz")


def downgrade() -> None:
    op.execute("ALTER TABLE notifications DROP COLUMN may_land_until")
