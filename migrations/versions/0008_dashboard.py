"""The dashboard: the audit log of operators' actions, the attempt-rate rollup the charts read,
campaign progress samples (for rate and ETA), and a BRIN index that finds attempts by time.

Revision ID: 0008_dashboard
Revises: 0004_service
"""

from alembic import op

revision = "0008_dashboard"
# 0005_display_names, 0006_outages and 0007_bounces come between when they land.
down_revision = "0007_bounces"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
-- Every change made from the dashboard: who (the role and a fingerprint of the token, never
-- the token), what, when, and on what. `email_ids` lists the emails a bulk action changed, so
-- an email's page finds the actions on it (GIN) however they were chosen.
CREATE TABLE mailq.audit_log (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at           timestamptz NOT NULL DEFAULT now(),
    actor        text        NOT NULL,
    action       text        NOT NULL,
    target_type  text        NOT NULL,
    target       text        NOT NULL,
    email_ids    bigint[],
    detail       jsonb       NOT NULL DEFAULT '{}'::jsonb,
    CONSTRAINT audit_log_target_type_known
        CHECK (target_type IN ('email', 'emails', 'kind', 'campaign', 'suppression', 'failures'))
);
CREATE INDEX audit_log_target_idx ON mailq.audit_log (target_type, target, id DESC);
CREATE INDEX audit_log_email_ids_idx ON mailq.audit_log USING gin (email_ids)
    WHERE email_ids IS NOT NULL;

-- Attempts by time. Attempts are only ever appended, at now(), so their physical order is
-- their time order: a BRIN index of a few pages finds a minute's attempts without an index
-- entry per row (the recorder's insert pays next to nothing; no index on mailq.emails).
CREATE INDEX attempts_finished_brin ON mailq.attempts USING brin (finished_at)
    WITH (pages_per_range = 16);

-- Attempts per closed minute by outcome, counted once from mailq.attempts when the dashboard
-- first needs that minute (a minute is closed a little after it ends). The send and failure
-- charts read 60 or 1,440 of these rows, never a day of attempts.
CREATE TABLE mailq.attempt_rates (
    minute  timestamptz PRIMARY KEY,
    sent    bigint      NOT NULL,
    retry   bigint      NOT NULL,
    failed  bigint      NOT NULL,
    lost    bigint      NOT NULL,
    CONSTRAINT attempt_rates_on_the_minute CHECK (minute = date_trunc('minute', minute))
);

-- A campaign's finished count now and then (taken when its progress is shown), for its
-- rate and ETA: finished counts come from mailq.campaign_counts and have no time of their own.
CREATE TABLE mailq.campaign_samples (
    campaign_id  bigint      NOT NULL,
    sampled_at   timestamptz NOT NULL,
    finished     bigint      NOT NULL,
    PRIMARY KEY (campaign_id, sampled_at)
);
"""
    )


def downgrade() -> None:
    op.execute(
        """
DROP TABLE IF EXISTS mailq.campaign_samples;
DROP TABLE IF EXISTS mailq.attempt_rates;
DROP INDEX IF EXISTS mailq.attempts_finished_brin;
DROP TABLE IF EXISTS mailq.audit_log;
"""
    )
