"""Recipients per campaign, counted when they are inserted: a campaign's open emails are its
recipients less its finished ones (mailq.campaign_counts), so the dashboard's overview shows the
progress of campaigns with a million waiting recipients without reading one of them. Counted
by the INSERT branch of the campaign count trigger, in the pass over the new rows it made
already; the claim (an UPDATE) writes nothing more.

And attempts_finished_brin summarises each page range once it is full (autosummarize: the
next autovacuum round does it), not only when a vacuum of mailq.attempts comes by: an
insert-only table is vacuumed after a fifth of its size more rows, and until then the
overview's live minutes would read every attempt since (2,000,000 of 10,000,000).

Revision ID: 0012_dashboard_overview
Revises: 0011_bounce_policy
"""

from alembic import op

revision = "0012_dashboard_overview"
down_revision = "0011_bounce_policy"
branch_labels = None
depends_on = None

# The UPDATE branch, as 0002_email_features keeps it (finished emails per campaign).
_UPDATE = """
        INSERT INTO mailq.campaign_counts AS c (campaign_id, status, shard, n)
        SELECT campaign_id, status, pg_backend_pid() % 16, sum(delta)
        FROM (
            SELECT campaign_id, status, 1 AS delta FROM new_rows
            WHERE finished_at IS NOT NULL AND campaign_id IS NOT NULL
            UNION ALL
            SELECT campaign_id, status, -1 FROM old_rows
            WHERE finished_at IS NOT NULL AND campaign_id IS NOT NULL
        ) AS d
        GROUP BY campaign_id, status
        HAVING sum(delta) <> 0
        ON CONFLICT (campaign_id, status, shard) DO UPDATE SET n = c.n + excluded.n;"""
_INSERT_0002 = """
        INSERT INTO mailq.campaign_counts AS c (campaign_id, status, shard, n)
        SELECT campaign_id, status, pg_backend_pid() % 16, count(*)
        FROM new_rows WHERE finished_at IS NOT NULL AND campaign_id IS NOT NULL
        GROUP BY campaign_id, status
        ON CONFLICT (campaign_id, status, shard) DO UPDATE SET n = c.n + excluded.n;"""
# One pass over the new rows for both counts (the CTE is read twice, so it is materialised).
_INSERT = """
        WITH added AS (
            SELECT campaign_id, status, finished_at IS NOT NULL AS finished, count(*) AS n
            FROM new_rows WHERE campaign_id IS NOT NULL
            GROUP BY 1, 2, 3
        ),
        finished AS (
            INSERT INTO mailq.campaign_counts AS c (campaign_id, status, shard, n)
            SELECT campaign_id, status, pg_backend_pid() % 16, sum(n)
            FROM added WHERE finished
            GROUP BY campaign_id, status
            ON CONFLICT (campaign_id, status, shard) DO UPDATE SET n = c.n + excluded.n
        )
        INSERT INTO mailq.campaign_recipient_counts AS c (campaign_id, shard, n)
        SELECT campaign_id, pg_backend_pid() % 16, sum(n)
        FROM added
        GROUP BY campaign_id
        ON CONFLICT (campaign_id, shard) DO UPDATE SET n = c.n + excluded.n;"""


def _function(insert: str) -> str:
    return f"""
CREATE OR REPLACE FUNCTION mailq.count_campaign_finished() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    IF TG_OP = 'INSERT' THEN{insert}
    ELSE{_UPDATE}
    END IF;
    RETURN NULL;
END
$fn$;
"""


def upgrade() -> None:
    op.execute(
        """
-- Writers wait while the counts are filled in and the trigger starts keeping them.
LOCK TABLE mailq.emails IN SHARE ROW EXCLUSIVE MODE;

-- Emails ever added to each campaign, sharded per backend like mailq.campaign_counts. Like
-- those, pruning finished emails does not subtract from it.
CREATE TABLE mailq.campaign_recipient_counts (
    campaign_id  bigint   NOT NULL,
    shard        smallint NOT NULL,
    n            bigint   NOT NULL,
    PRIMARY KEY (campaign_id, shard)
);

-- What is there already: the open emails (emails_campaign_open_idx) and the finished ones
-- (their counts, which outlive pruned rows).
INSERT INTO mailq.campaign_recipient_counts (campaign_id, shard, n)
SELECT campaign_id, 0, sum(n)
FROM (
    SELECT campaign_id, count(*) AS n FROM mailq.emails
    WHERE campaign_id IS NOT NULL AND status IN ('waiting', 'sending', 'unknown')
    GROUP BY 1
    UNION ALL
    SELECT campaign_id, sum(n) FROM mailq.campaign_counts GROUP BY 1
) AS u
GROUP BY campaign_id
HAVING sum(n) <> 0;

ALTER INDEX mailq.attempts_finished_brin SET (autosummarize = on);
-- The ranges filled since the last vacuum, once now.
SELECT brin_summarize_new_values('mailq.attempts_finished_brin');
"""
        + _function(_INSERT)
    )


def downgrade() -> None:
    op.execute(
        _function(_INSERT_0002)
        + """
ALTER INDEX mailq.attempts_finished_brin RESET (autosummarize);
DROP TABLE IF EXISTS mailq.campaign_recipient_counts;
"""
    )
