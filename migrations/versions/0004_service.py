"""The HTTP service: Idempotency-Key records, and an index to find emails by metadata.

Revision ID: 0004_service
Revises: 0003_operators
"""

from alembic import op

revision = "0004_service"
down_revision = "0003_operators"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
-- One row per Idempotency-Key a caller used, scoped by the caller's token (stored as a
-- SHA-256 digest, never the token itself). The row is inserted when the first request starts
-- and given its response in the same transaction as the emails it queued, so a replay either
-- waits on the primary key for that transaction or finds the finished response; a replay can
-- never see a half-done request. Rows older than the retention (24 h) are pruned, and an
-- expired row is taken over by the next request that uses its key.
CREATE TABLE mailq.idempotency_keys (
    scope         text        NOT NULL,
    key           text        NOT NULL,
    request_hash  text        NOT NULL,
    status        smallint,
    response      jsonb,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, key),
    CONSTRAINT idempotency_keys_key_length CHECK (length(key) BETWEEN 1 AND 255)
);
CREATE INDEX idempotency_keys_created_idx ON mailq.idempotency_keys (created_at);

-- GET /v1/emails?metadata.KEY=VALUE: containment (@>) through a GIN index. Only emails that
-- carry metadata are indexed, so enqueueing emails without metadata costs nothing extra.
CREATE INDEX emails_metadata_idx ON mailq.emails USING gin (metadata jsonb_path_ops)
    WHERE metadata <> '{}'::jsonb;
"""
    )


def downgrade() -> None:
    op.execute(
        """
DROP INDEX IF EXISTS mailq.emails_metadata_idx;
DROP TABLE IF EXISTS mailq.idempotency_keys;
"""
    )
