"""Bounce policy: the Message-ID index only sent emails pay for, and suppressions that expire
found by their expiry.

Revision ID: 0011_bounce_policy
Revises: 0010_dashboard_counts
"""

from alembic import op

revision = "0011_bounce_policy"
down_revision = "0010_dashboard_counts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
-- A bounce names a sent email by its Message-ID: only sent emails need to be found that way.
-- The full hash index of 0007 cost every enqueued row an index entry (bulk enqueue paid for
-- it); this partial one is written only by the update to 'sent'.
CREATE INDEX emails_message_id_sent_idx ON mailq.emails USING hash (message_id)
    WHERE status = 'sent';
DROP INDEX IF EXISTS mailq.emails_message_id_idx;

-- Suppressions that end (soft bounces): the expired ones are found and removed in batches.
CREATE INDEX suppressions_expires_idx ON mailq.suppressions (expires_at)
    WHERE expires_at IS NOT NULL;
"""
    )


def downgrade() -> None:
    op.execute(
        """
DROP INDEX IF EXISTS mailq.suppressions_expires_idx;
CREATE INDEX emails_message_id_idx ON mailq.emails USING hash (message_id);
DROP INDEX IF EXISTS mailq.emails_message_id_sent_idx;
"""
    )
