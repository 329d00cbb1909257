"""The Message-ID index of sent emails in Message-ID order: new Message-IDs begin with the
clock, so that the emails sent together land in adjacent index pages.

Revision ID: 0013_message_id_btree
Revises: 0012_dashboard_overview
"""

from alembic import op

revision = "0013_message_id_btree"
down_revision = "0012_dashboard_overview"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
-- A hash index puts each key on a page of its own: with millions of sent emails each newly
-- sent one dirtied a page nobody else touched, written whole to the WAL at its first change
-- after a checkpoint. Message-IDs made from now on begin with the time they were made
-- (mailq.addresses.new_message_id), so in a B-tree the emails sent together sit together.
-- "C" collation: Message-IDs are compared byte by byte (and found by equality only).
CREATE INDEX emails_message_id_sent_btree ON mailq.emails (message_id COLLATE "C")
    WHERE status = 'sent';
DROP INDEX IF EXISTS mailq.emails_message_id_sent_idx;
"""
    )


def downgrade() -> None:
    op.execute(
        """
CREATE INDEX emails_message_id_sent_idx ON mailq.emails USING hash (message_id)
    WHERE status = 'sent';
DROP INDEX IF EXISTS mailq.emails_message_id_sent_btree;
"""
    )
