"""Display names: the name given with an email's `to` address, kept apart from the address.

`to_address` stays the bare address (what suppression, campaign de-duplication and the views
match on); `to_name` holds the display name of `Name <address>`, null when none was given.
Adding a nullable column without a default rewrites nothing: it is instant on a big table.

Revision ID: 0005_display_names
Revises: 0004_service
"""

from alembic import op

revision = "0005_display_names"
down_revision = "0004_service"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
ALTER TABLE mailq.emails ADD COLUMN to_name text;
ALTER TABLE mailq.emails ADD CONSTRAINT emails_to_name_length
    CHECK (to_name IS NULL OR length(to_name) BETWEEN 1 AND 256) NOT VALID;
COMMENT ON COLUMN mailq.emails.to_name IS
    'display name of the to mailbox (Name <to_address>); null when none was given';
"""
    )


def downgrade() -> None:
    op.execute(
        """
ALTER TABLE mailq.emails DROP CONSTRAINT IF EXISTS emails_to_name_length;
ALTER TABLE mailq.emails DROP COLUMN IF EXISTS to_name;
"""
    )
