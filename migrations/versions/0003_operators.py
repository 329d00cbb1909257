"""Operators: kinds paused by an operator (an emergency stop per kind).

Revision ID: 0003_operators
Revises: 0002_email_features
"""

from alembic import op

revision = "0003_operators"
down_revision = "0002_email_features"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
-- A kind listed here is not claimed by any worker until it is resumed. Emails of the kind
-- keep waiting (and can still be queued); sends already in flight finish.
CREATE TABLE mailq.paused_kinds (
    kind       text        PRIMARY KEY,
    paused_at  timestamptz NOT NULL DEFAULT now(),
    paused_by  text,
    CONSTRAINT paused_kinds_kind_name CHECK (kind ~ '^[a-z][a-z0-9_]{0,62}$')
);
"""
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS mailq.paused_kinds;")
