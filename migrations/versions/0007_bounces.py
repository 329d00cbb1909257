"""Bounces and complaints: delivery events, their counts, the provider's message id on each
attempt, suppressions that expire, the bounce breakers, and the mailq.bounces view.

Revision ID: 0007_bounces
Revises: 0004_service
"""

from alembic import op

revision = "0007_bounces"
down_revision = "0006_outages"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
-- The ESP's id of the message an attempt handed over (HTTP backends), which the provider's
-- later webhook events name. Only such attempts are indexed: SMTP attempts cost nothing.
ALTER TABLE mailq.attempts ADD COLUMN provider_message_id text;
CREATE INDEX attempts_provider_message_idx ON mailq.attempts (provider_message_id)
    WHERE provider_message_id IS NOT NULL;

-- A bounce without a VERP token (an MTA that bounces to From, a feedback report that dropped
-- the envelope sender) names its email by our Message-ID only. A hash index: 4 bytes per
-- email rather than the 40-odd of the Message-ID in a btree, and equality is all it serves.
CREATE INDEX emails_message_id_idx ON mailq.emails USING hash (message_id);

-- A suppression may end: a soft-bounce suppression expires (30 days by default). An expired
-- row no longer blocks sending and is replaced by the next suppression of its address.
ALTER TABLE mailq.suppressions ADD COLUMN expires_at timestamptz;

-- What a DSN, a feedback report or a provider's webhook said happened to an email. The
-- email's kind and campaign are copied at insert so that the counts below need no join.
-- `dedup_key` names the event at its source: the same event delivered twice (a webhook
-- retry, a DSN sent again) is one row.
CREATE TABLE mailq.events (
    id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email_id             bigint,
    kind                 text,
    campaign_id          bigint,
    type                 text        NOT NULL,
    subtype              text,
    sender_side          boolean     NOT NULL DEFAULT false,
    provider             text        NOT NULL,
    recipient            text,
    status_code          text,
    diagnostic           text,
    feedback_type        text,
    provider_message_id  text,
    message_id           text,
    dedup_key            text        NOT NULL,
    occurred_at          timestamptz,
    received_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT events_dedup_key_unique UNIQUE (dedup_key),
    CONSTRAINT events_type_known CHECK (type IN ('delivered', 'bounced', 'complained',
                                                  'unsubscribed', 'deferred')),
    CONSTRAINT events_subtype_iff_bounced
        CHECK (type = 'bounced' AND subtype IN ('hard', 'soft')
               OR type <> 'bounced' AND subtype IS NULL),
    -- A matched event knows its email's kind; an unmatched one knows nothing of it.
    CONSTRAINT events_kind_iff_matched CHECK ((email_id IS NULL) = (kind IS NULL))
);
-- GET /v1/emails/{id}: the events of one email.
CREATE INDEX events_email_idx ON mailq.events (email_id) WHERE email_id IS NOT NULL;
-- GET /v1/events?since=…: in arrival order.
CREATE INDEX events_received_idx ON mailq.events (received_at, id);
-- The soft-bounce policy counts one recipient's soft bounces of the last days.
CREATE INDEX events_soft_recipient_idx ON mailq.events (lower(recipient), received_at)
    WHERE type = 'bounced' AND subtype = 'soft' AND NOT sender_side;

-- Events per kind, campaign (0: none), day and outcome, kept by a trigger on mailq.events
-- (never on mailq.emails), sharded per backend like mailq.finished_counts. The rates divide
-- them by the sent counts that exist already: mailq.campaign_counts for a campaign,
-- mailq.finished_counts for a kind. Outcomes: delivered, hard_bounced, soft_bounced,
-- rejected (a refusal about the sender: 5.7.26, 4.7.x ...), complained, unsubscribed,
-- deferred.
CREATE TABLE mailq.event_counts (
    kind         text     NOT NULL,
    campaign_id  bigint   NOT NULL,
    day          date     NOT NULL,
    outcome      text     NOT NULL,
    shard        smallint NOT NULL,
    n            bigint   NOT NULL,
    PRIMARY KEY (kind, campaign_id, day, outcome, shard)
);

CREATE FUNCTION mailq.count_events() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    INSERT INTO mailq.event_counts AS c (kind, campaign_id, day, outcome, shard, n)
    SELECT kind, coalesce(campaign_id, 0), (received_at AT TIME ZONE 'UTC')::date,
           CASE WHEN type <> 'bounced' THEN type
                WHEN sender_side THEN 'rejected'
                ELSE subtype || '_bounced' END,
           pg_backend_pid() % 16, count(*)
    FROM new_rows
    WHERE email_id IS NOT NULL
    GROUP BY 1, 2, 3, 4
    ON CONFLICT (kind, campaign_id, day, outcome, shard) DO UPDATE SET n = c.n + excluded.n;
    RETURN NULL;
END
$fn$;

CREATE TRIGGER events_count_insert AFTER INSERT ON mailq.events
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION mailq.count_events();

-- A campaign or kind the bounce breaker paused, with the reason, and the counts when it
-- tripped: after an operator resumes, the breaker judges only what was sent since.
CREATE TABLE mailq.bounce_breakers (
    scope         text        NOT NULL,
    key           text        NOT NULL,
    reason        text        NOT NULL,
    tripped_at    timestamptz NOT NULL,
    sent          bigint      NOT NULL,
    hard_bounced  bigint      NOT NULL,
    complained    bigint      NOT NULL,
    PRIMARY KEY (scope, key),
    CONSTRAINT bounce_breakers_scope_known CHECK (scope IN ('campaign', 'kind'))
);

-- Rates per campaign (over its life) and per kind (events of the last `days` days, the
-- retention over which mailq.finished_counts keeps its sent emails). The breaker's
-- `hard_bounce_rate` counts hard bounces and refusals about the sender.
CREATE FUNCTION mailq.bounce_rates(days integer)
RETURNS TABLE (scope text, kind text, campaign_id bigint, sent bigint, delivered bigint,
               hard_bounced bigint, soft_bounced bigint, rejected bigint, complained bigint,
               unsubscribed bigint, deferred bigint, hard_bounce_rate float8,
               complaint_rate float8)
LANGUAGE sql STABLE AS $fn$
    WITH per_campaign AS (
        SELECT 'campaign'::text AS scope, c.kind, c.id AS campaign_id,
               coalesce((SELECT sum(k.n) FROM mailq.campaign_counts AS k
                         WHERE k.campaign_id = c.id AND k.status = 'sent'), 0)::bigint AS sent,
               e.*
        FROM mailq.campaigns AS c
        CROSS JOIN LATERAL (
            SELECT coalesce(sum(n) FILTER (WHERE outcome = 'delivered'), 0)::bigint AS delivered,
                   coalesce(sum(n) FILTER (WHERE outcome = 'hard_bounced'), 0)::bigint,
                   coalesce(sum(n) FILTER (WHERE outcome = 'soft_bounced'), 0)::bigint,
                   coalesce(sum(n) FILTER (WHERE outcome = 'rejected'), 0)::bigint,
                   coalesce(sum(n) FILTER (WHERE outcome = 'complained'), 0)::bigint,
                   coalesce(sum(n) FILTER (WHERE outcome = 'unsubscribed'), 0)::bigint,
                   coalesce(sum(n) FILTER (WHERE outcome = 'deferred'), 0)::bigint
            FROM mailq.event_counts AS x
            WHERE x.kind = c.kind AND x.campaign_id = c.id
        ) AS e(delivered, hard_bounced, soft_bounced, rejected, complained, unsubscribed,
               deferred)
    ),
    kinds AS (
        SELECT kind FROM mailq.finished_counts WHERE status = 'sent'
        UNION
        SELECT kind FROM mailq.event_counts WHERE day >= current_date - days
    ),
    per_kind AS (
        SELECT 'kind'::text AS scope, k.kind, NULL::bigint AS campaign_id,
               coalesce((SELECT sum(f.n) FROM mailq.finished_counts AS f
                         WHERE f.kind = k.kind AND f.status = 'sent'), 0)::bigint AS sent,
               e.*
        FROM kinds AS k
        CROSS JOIN LATERAL (
            SELECT coalesce(sum(n) FILTER (WHERE outcome = 'delivered'), 0)::bigint,
                   coalesce(sum(n) FILTER (WHERE outcome = 'hard_bounced'), 0)::bigint,
                   coalesce(sum(n) FILTER (WHERE outcome = 'soft_bounced'), 0)::bigint,
                   coalesce(sum(n) FILTER (WHERE outcome = 'rejected'), 0)::bigint,
                   coalesce(sum(n) FILTER (WHERE outcome = 'complained'), 0)::bigint,
                   coalesce(sum(n) FILTER (WHERE outcome = 'unsubscribed'), 0)::bigint,
                   coalesce(sum(n) FILTER (WHERE outcome = 'deferred'), 0)::bigint
            FROM mailq.event_counts AS x
            WHERE x.kind = k.kind AND x.day >= current_date - days
        ) AS e(delivered, hard_bounced, soft_bounced, rejected, complained, unsubscribed,
               deferred)
    )
    SELECT u.*,
           CASE WHEN u.sent > 0 THEN (u.hard_bounced + u.rejected)::float8 / u.sent END,
           CASE WHEN u.sent > 0 THEN u.complained::float8 / u.sent END
    FROM (SELECT * FROM per_kind UNION ALL SELECT * FROM per_campaign) AS u
$fn$;

-- For psql: rates per kind (events of the last 14 days, the default retention) and per
-- campaign. `SELECT * FROM mailq.bounce_rates(30)` for another window.
CREATE VIEW mailq.bounces AS SELECT * FROM mailq.bounce_rates(14);
"""
    )


def downgrade() -> None:
    op.execute(
        """
DROP VIEW IF EXISTS mailq.bounces;
DROP FUNCTION IF EXISTS mailq.bounce_rates(integer);
DROP TABLE IF EXISTS mailq.bounce_breakers;
DROP TRIGGER IF EXISTS events_count_insert ON mailq.events;
DROP FUNCTION IF EXISTS mailq.count_events();
DROP TABLE IF EXISTS mailq.event_counts;
DROP TABLE IF EXISTS mailq.events;
-- The older schema knows no expiry: a suppression meant to end would last for ever.
DELETE FROM mailq.suppressions WHERE expires_at IS NOT NULL;
ALTER TABLE mailq.suppressions DROP COLUMN IF EXISTS expires_at;
DROP INDEX IF EXISTS mailq.emails_message_id_idx;
DROP INDEX IF EXISTS mailq.attempts_provider_message_idx;
ALTER TABLE mailq.attempts DROP COLUMN IF EXISTS provider_message_id;
"""
    )
