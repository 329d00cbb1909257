"""Outages: the `deferred` outcome, expiry, time-based retry, the backends' circuit breakers.

Revision ID: 0006_outages
Revises: 0004_service

(0005_display_names is being written alongside; the chain is made linear when both land.)
"""

from alembic import op

revision = "0006_outages"
down_revision = "0005_display_names"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
-- An attempt the backend itself failed (refused connection, greeting, TLS, AUTH, a 421 on
-- connect, an ESP's account-level error) is `deferred`: recorded, but not the email's fault,
-- so it does not count toward max_attempts.
ALTER TABLE mailq.attempts DROP CONSTRAINT attempts_outcome_known;
ALTER TABLE mailq.attempts ADD CONSTRAINT attempts_outcome_known
    CHECK (outcome IN ('sent', 'retry', 'failed', 'lost', 'deferred'));

ALTER TABLE mailq.emails
    -- Not handed to the server by then: not sent at all (`failed`, last_error `expired`).
    ADD COLUMN expires_at timestamptz,
    -- When an operator last retried the email (`mailq retry`). Its deadlines (retry_for,
    -- expire_after, the span of expires_at) count from here; null: from when it was first
    -- due (send_at, else created_at).
    ADD COLUMN retried_at timestamptz,
    -- Attempts among `attempts` that were deferred (the backend's failure, not the email's).
    ADD COLUMN deferrals integer NOT NULL DEFAULT 0,
    -- Retries are time-based now (retry_for); max_attempts is an extra cap, null: none.
    ALTER COLUMN max_attempts DROP NOT NULL,
    ALTER COLUMN max_attempts DROP DEFAULT,
    ADD CONSTRAINT emails_deferrals_range CHECK (deferrals >= 0 AND deferrals <= attempts);

ALTER TABLE mailq.campaigns
    ADD COLUMN expires_at timestamptz,
    ALTER COLUMN max_attempts DROP NOT NULL;

-- One row per backend (MAILQ_BACKEND, named without its credentials) that ever failed, shared
-- by every worker: while `open`, no worker claims emails for it, and one worker at a time
-- (`probe_by`, until `probe_until`) probes it when `probe_at` comes (a connection with EHLO
-- and AUTH, or an authenticated no-op request: never a real email). A failed probe doubles
-- `backoff_s` (capped); a successful one closes the breaker and wakes the workers.
CREATE TABLE mailq.backend_breakers (
    backend      text        PRIMARY KEY,
    state        text        NOT NULL,
    opened_at    timestamptz NOT NULL,
    closed_at    timestamptz,
    last_error   text        NOT NULL,
    -- Attempts deferred and probes failed since it opened.
    deferred     bigint      NOT NULL DEFAULT 0,
    probes       integer     NOT NULL DEFAULT 0,
    backoff_s    float8      NOT NULL,
    probe_at     timestamptz NOT NULL,
    probe_by     uuid,
    probe_until  timestamptz,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT backend_breakers_state_known CHECK (state IN ('open', 'closed')),
    CONSTRAINT backend_breakers_closed_at_iff_closed
        CHECK ((state = 'closed') = (closed_at IS NOT NULL)),
    CONSTRAINT backend_breakers_backoff_positive CHECK (backoff_s > 0)
);
"""
    )


def downgrade() -> None:
    op.execute(
        """
DROP TABLE IF EXISTS mailq.backend_breakers;
UPDATE mailq.campaigns SET max_attempts = 8 WHERE max_attempts IS NULL;
ALTER TABLE mailq.campaigns
    DROP COLUMN IF EXISTS expires_at,
    ALTER COLUMN max_attempts SET NOT NULL;
-- Without time-based retry the cap is all there is: room for 8 more attempts.
UPDATE mailq.emails SET max_attempts = attempts + 8 WHERE max_attempts IS NULL;
ALTER TABLE mailq.emails
    DROP CONSTRAINT IF EXISTS emails_deferrals_range,
    DROP COLUMN IF EXISTS deferrals,
    DROP COLUMN IF EXISTS retried_at,
    DROP COLUMN IF EXISTS expires_at,
    ALTER COLUMN max_attempts SET DEFAULT 5,
    ALTER COLUMN max_attempts SET NOT NULL;
UPDATE mailq.attempts SET outcome = 'retry' WHERE outcome = 'deferred';
ALTER TABLE mailq.attempts DROP CONSTRAINT attempts_outcome_known;
ALTER TABLE mailq.attempts ADD CONSTRAINT attempts_outcome_known
    CHECK (outcome IN ('sent', 'retry', 'failed', 'lost'));
"""
    )
