"""When the last SMS send request that may have reached the provider started.

- `notifications.last_send_at`: written (and committed) just before each create
  request goes out. After an unknown outcome, a provider look-up is conclusive
  only once TWILIO_TIMEOUT + SEARCHJOBS_SMS_LOOKUP_MARGIN have passed since
  then: before that, the request may still land. `claimed_at` cannot say this:
  a claim that only looks a message up, or waits, also moves it.

Rows that may have reached the provider under the previous code (`sending`,
`unknown`) get their last claim time, which is when that code last sent.

Revision ID: 0005
Revises: 0004
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE notifications ADD COLUMN last_send_at timestamptz")
    op.execute("UPDATE notifications SET last_send_at = coalesce(claimed_at, first_attempt_at, updated_at) "
               "WHERE status IN ('sending', 'unknown')")


def downgrade() -> None:
    op.execute("ALTER TABLE notifications DROP COLUMN last_send_at")
