"""The open-address index leaves campaign emails out: a campaign's recipients are found by
address through emails_campaign_recipient_idx, which every campaign email is in already.

Revision ID: 0014_open_address_no_campaigns
Revises: 0013_message_id_btree
"""

from alembic import op

revision = "0014_open_address_no_campaigns"
down_revision = "0013_message_id_btree"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
-- Each index a campaign's rows are written into costs its fan-out: a million recipients
-- wrote a million entries here, for a look-up (suppressing an address) that the campaign
-- recipient index serves per campaign (email_cancel_by_address).
CREATE INDEX emails_open_address_new
    ON mailq.emails (lower(to_address))
    WHERE status IN ('waiting', 'unknown') AND campaign_id IS NULL;
DROP INDEX mailq.emails_open_address_idx;
ALTER INDEX mailq.emails_open_address_new RENAME TO emails_open_address_idx;
"""
    )


def downgrade() -> None:
    op.execute(
        """
CREATE INDEX emails_open_address_old
    ON mailq.emails (lower(to_address)) WHERE status IN ('waiting', 'unknown');
DROP INDEX mailq.emails_open_address_idx;
ALTER INDEX mailq.emails_open_address_old RENAME TO emails_open_address_idx;
"""
    )
