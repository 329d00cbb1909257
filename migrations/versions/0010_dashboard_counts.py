"""Counts by state that read no backlog: emails and retrying emails per kind, and the waiting
emails due later by 10-second slot, kept by the count triggers, so that mailq.queue_stats costs the
same with 100 or 1,000,000 waiting emails. The claim writes none of them.

Revision ID: 0010_dashboard_counts
Revises: 0008_dashboard
"""

from alembic import op

revision = "0010_dashboard_counts"
down_revision = "0008_dashboard"
branch_labels = None
depends_on = None

# The finished counts, as 0001_create_queue keeps them (both versions of the function).
_FINISHED_INSERT = """
        INSERT INTO mailq.finished_counts AS c (kind, status, shard, n)
        SELECT kind, status, pg_backend_pid() % 16, count(*)
        FROM new_rows WHERE finished_at IS NOT NULL GROUP BY kind, status
        ON CONFLICT (kind, status, shard) DO UPDATE SET n = c.n + excluded.n;"""
_FINISHED_DELETE = """
        INSERT INTO mailq.finished_counts AS c (kind, status, shard, n)
        SELECT kind, status, pg_backend_pid() % 16, -count(*)
        FROM old_rows WHERE finished_at IS NOT NULL GROUP BY kind, status
        ON CONFLICT (kind, status, shard) DO UPDATE SET n = c.n + excluded.n;"""
_FINISHED_UPDATE = """
        INSERT INTO mailq.finished_counts AS c (kind, status, shard, n)
        SELECT kind, status, pg_backend_pid() % 16, sum(delta)
        FROM (
            SELECT kind, status, 1 AS delta FROM new_rows WHERE finished_at IS NOT NULL
            UNION ALL
            SELECT kind, status, -1 FROM old_rows WHERE finished_at IS NOT NULL
        ) AS d
        GROUP BY kind, status
        HAVING sum(delta) <> 0
        ON CONFLICT (kind, status, shard) DO UPDATE SET n = c.n + excluded.n;"""


def _kind_delta(source: str) -> str:
    """Emails and retrying emails per kind, from `source` (a union of signed rows)."""
    return f"""
        INSERT INTO mailq.kind_counts AS c (kind, shard, emails, retrying)
        SELECT kind, pg_backend_pid() % 16, sum(rows), sum(retrying)
        FROM ({source}) AS d
        GROUP BY kind
        HAVING sum(rows) <> 0 OR sum(retrying) <> 0
        ON CONFLICT (kind, shard) DO UPDATE
        SET emails = c.emails + excluded.emails, retrying = c.retrying + excluded.retrying;"""


def _later_delta(source: str) -> str:
    """Waiting emails due after now() by kind and 10-second slot, from `source`."""
    return f"""
        INSERT INTO mailq.waiting_later_counts AS c (kind, slot, shard, emails, retrying)
        SELECT kind, slot, pg_backend_pid() % 16, sum(rows), sum(retrying)
        FROM ({source}) AS d
        GROUP BY kind, slot
        HAVING sum(rows) <> 0 OR sum(retrying) <> 0
        ON CONFLICT (kind, slot, shard) DO UPDATE
        SET emails = c.emails + excluded.emails, retrying = c.retrying + excluded.retrying;"""


_RETRYING = "(status = 'waiting' AND attempts > 0)::integer"
_NEW_KIND = f"SELECT kind, 1 AS rows, {_RETRYING} AS retrying FROM new_rows"
_OLD_KIND = f"SELECT kind, -1 AS rows, -{_RETRYING} AS retrying FROM old_rows"
# Only rows waiting and due later count here: a claim takes due rows and leaves sending ones,
# so the claim's statement selects nothing and writes nothing.
_LATER = "status = 'waiting' AND run_at > now()"
_SLOT = "date_bin('10 seconds', run_at, timestamptz '2000-01-01 00:00+00') AS slot"
_NEW_LATER = f"SELECT kind, {_SLOT}, 1 AS rows, {_RETRYING} AS retrying FROM new_rows"
_OLD_LATER = f"SELECT kind, {_SLOT}, -1 AS rows, -{_RETRYING} AS retrying FROM old_rows"
_UPDATE_RETRYING = (
    f"SELECT kind, 0 AS rows, {_RETRYING} AS retrying FROM new_rows WHERE status = 'waiting' "
    f"UNION ALL SELECT kind, 0, -{_RETRYING} FROM old_rows WHERE status = 'waiting'"
)


def _function(insert: str, delete: str, update: str) -> str:
    return f"""
CREATE OR REPLACE FUNCTION mailq.count_finished_delta() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    IF TG_OP = 'INSERT' THEN{insert}
    ELSIF TG_OP = 'DELETE' THEN{delete}
    ELSE{update}
    END IF;
    RETURN NULL;
END
$fn$;
"""


_VIEW_0001 = """
CREATE OR REPLACE VIEW mailq.queue_stats AS
SELECT kind, state, sum(count)::bigint AS count, max(oldest_due_age) AS oldest_due_age
FROM (
    SELECT kind, mailq.email_state(status, run_at, attempts) AS state, count(*) AS count,
           max(now() - run_at) FILTER (WHERE run_at <= now()) AS oldest_due_age
    FROM mailq.emails WHERE status = 'waiting' GROUP BY 1, 2
    UNION ALL
    SELECT kind, 'sending', count(*), max(now() - run_at) FROM mailq.emails
    WHERE status = 'sending' GROUP BY 1
    UNION ALL
    SELECT kind, 'unknown', count(*), NULL FROM mailq.emails WHERE status = 'unknown' GROUP BY 1
    UNION ALL
    SELECT kind, status, sum(n), NULL FROM mailq.finished_counts GROUP BY 1, 2 HAVING sum(n) <> 0
) AS s
GROUP BY kind, state;
"""

_VIEW = """
-- Counts by kind and public state, reading no backlog: emails and retrying ones per kind
-- (mailq.kind_counts), finished ones (mailq.finished_counts), sending and unknown ones
-- through their partial indexes (what is in flight or in doubt), the waiting ones due later
-- (mailq.waiting_later_counts for the 10-second slots after this one, emails_due_idx for the
-- rest of this slot). Waiting = emails - finished - sending - unknown; of them, due later and not
-- retrying = scheduled, retrying = retrying, the rest = queued. oldest_due_age: the kind's
-- longest-due waiting email (its first due entry of emails_due_idx per priority), on its
-- `queued` row (on `retrying` when none is queued), and the oldest claim on `sending`.
CREATE OR REPLACE VIEW mailq.queue_stats AS
WITH kinds AS (
    SELECT kind, sum(emails) AS emails, sum(retrying) AS retrying
    FROM mailq.kind_counts GROUP BY kind
),
finished AS (
    SELECT kind, status, sum(n) AS n FROM mailq.finished_counts GROUP BY 1, 2
),
sending AS (
    SELECT kind, count(*) AS n, max(now() - run_at) AS oldest
    FROM mailq.emails WHERE status = 'sending' GROUP BY 1
),
unknown AS (
    SELECT kind, count(*) AS n FROM mailq.emails WHERE status = 'unknown' GROUP BY 1
),
later AS (
    SELECT kind, sum(emails) AS emails, sum(retrying) AS retrying
    FROM mailq.waiting_later_counts
    WHERE slot > date_bin('10 seconds', now(), timestamptz '2000-01-01 00:00+00')
    GROUP BY 1
),
waiting AS (
    SELECT k.kind,
           k.emails - coalesce((SELECT sum(f.n) FROM finished AS f WHERE f.kind = k.kind), 0)
               - coalesce(s.n, 0) - coalesce(u.n, 0) AS emails,
           k.retrying,
           coalesce(l.emails, 0) + soon.emails AS later,
           coalesce(l.retrying, 0) + soon.retrying AS retrying_later,
           due.oldest
    FROM kinds AS k
    LEFT JOIN sending AS s ON s.kind = k.kind
    LEFT JOIN unknown AS u ON u.kind = k.kind
    LEFT JOIN later AS l ON l.kind = k.kind
    CROSS JOIN LATERAL (
        SELECT coalesce(sum(c.emails), 0) AS emails, coalesce(sum(c.retrying), 0) AS retrying
        FROM generate_series(0, 9) AS p(priority)
        CROSS JOIN LATERAL (
            SELECT count(*) AS emails, count(*) FILTER (WHERE e.attempts > 0) AS retrying
            FROM mailq.emails AS e
            WHERE e.status = 'waiting' AND e.kind = k.kind AND e.priority = p.priority
              AND e.run_at > now()
              AND e.run_at < date_bin('10 seconds', now(), timestamptz '2000-01-01 00:00+00')
                             + interval '10 seconds'
        ) AS c
    ) AS soon
    CROSS JOIN LATERAL (
        SELECT now() - min(d.run_at) AS oldest
        FROM generate_series(0, 9) AS p(priority)
        CROSS JOIN LATERAL (
            SELECT e.run_at FROM mailq.emails AS e
            WHERE e.status = 'waiting' AND e.kind = k.kind AND e.priority = p.priority
              AND e.run_at <= now()
            ORDER BY e.run_at
            LIMIT 1
        ) AS d
    ) AS due
),
states AS (
    SELECT kind, 'queued' AS state, emails - later - (retrying - retrying_later) AS count,
           oldest AS oldest_due_age
    FROM waiting
    UNION ALL
    SELECT kind, 'scheduled', later - retrying_later, NULL FROM waiting
    UNION ALL
    SELECT kind, 'retrying', retrying,
           CASE WHEN emails - later - (retrying - retrying_later) = 0 THEN oldest END
    FROM waiting
    UNION ALL
    SELECT kind, 'sending', n, oldest FROM sending
    UNION ALL
    SELECT kind, 'unknown', n, NULL FROM unknown
    UNION ALL
    SELECT kind, status, n, NULL FROM finished
)
SELECT kind, state, count::bigint AS count,
       CASE WHEN state = 'queued' AND count = 0 THEN NULL ELSE oldest_due_age END
           AS oldest_due_age
FROM states
WHERE count <> 0;
"""


def upgrade() -> None:
    op.execute(
        """
-- Writers wait while the counts are filled in and the triggers start keeping them.
LOCK TABLE mailq.emails IN SHARE ROW EXCLUSIVE MODE;

-- Emails per kind (every row, whatever its state) and, of them, the retrying ones (waiting
-- after an attempt): kept by the count triggers, sharded per backend like finished_counts.
CREATE TABLE mailq.kind_counts (
    kind      text     NOT NULL,
    shard     smallint NOT NULL,
    emails    bigint   NOT NULL,
    retrying  bigint   NOT NULL,
    PRIMARY KEY (kind, shard)
);
-- Waiting emails by the 10-second slot they are due in, counted while they are due later: a
-- row is added when an email starts waiting for later (enqueued for later, retried with
-- backoff) and taken back when such an email changes before it is due (cancelled, paused,
-- rescheduled). Once a slot has begun its count is not read any more (a claim, which takes
-- only due emails, never writes here); `mailq prune` forgets those slots.
CREATE TABLE mailq.waiting_later_counts (
    kind      text        NOT NULL,
    slot      timestamptz NOT NULL,
    shard     smallint    NOT NULL,
    emails    bigint      NOT NULL,
    retrying  bigint      NOT NULL,
    PRIMARY KEY (kind, slot, shard)
);

-- What is there already: finished emails from their counts, the others through the partial
-- indexes (no scan of the finished rows).
INSERT INTO mailq.kind_counts (kind, shard, emails, retrying)
SELECT kind, 0, sum(emails), sum(retrying)
FROM (
    SELECT kind, sum(n) AS emails, 0 AS retrying FROM mailq.finished_counts GROUP BY 1
    UNION ALL
    SELECT kind, count(*), count(*) FILTER (WHERE attempts > 0) FROM mailq.emails
    WHERE status = 'waiting' GROUP BY 1
    UNION ALL
    SELECT kind, count(*), 0 FROM mailq.emails WHERE status = 'sending' GROUP BY 1
    UNION ALL
    SELECT kind, count(*), 0 FROM mailq.emails WHERE status = 'unknown' GROUP BY 1
) AS u
GROUP BY kind;
INSERT INTO mailq.waiting_later_counts (kind, slot, shard, emails, retrying)
SELECT kind, date_bin('10 seconds', run_at, timestamptz '2000-01-01 00:00+00'), 0, count(*),
       count(*) FILTER (WHERE attempts > 0)
FROM mailq.emails
WHERE status = 'waiting' AND run_at > now()
GROUP BY 1, 2;
"""
        + _function(
            _FINISHED_INSERT
            + _kind_delta(_NEW_KIND)
            + _later_delta(f"{_NEW_LATER} WHERE {_LATER}"),
            _FINISHED_DELETE
            + _kind_delta(_OLD_KIND)
            + _later_delta(f"{_OLD_LATER} WHERE {_LATER}"),
            _FINISHED_UPDATE
            + _kind_delta(_UPDATE_RETRYING)
            + _later_delta(f"{_NEW_LATER} WHERE {_LATER} UNION ALL {_OLD_LATER} WHERE {_LATER}"),
        )
        + _VIEW
    )


def downgrade() -> None:
    op.execute(
        _VIEW_0001
        + _function(_FINISHED_INSERT, _FINISHED_DELETE, _FINISHED_UPDATE)
        + """
DROP TABLE IF EXISTS mailq.waiting_later_counts;
DROP TABLE IF EXISTS mailq.kind_counts;
"""
    )
