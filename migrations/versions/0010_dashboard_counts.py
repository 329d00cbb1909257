"""Counts by state without the waiting rows' heap: retrying emails kept aside by the count
triggers, so that mailq.queue_stats reads the waiting emails from emails_due_idx alone.

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
# Rows that were retrying leave mailq.retrying_emails (by primary key: an empty array, the
# claim of emails never attempted, costs no read of it); rows that are retrying now enter it.
_RETRYING_LEAVE = """
        DELETE FROM mailq.retrying_emails
        WHERE email_id = ANY (ARRAY(SELECT id FROM old_rows
                                    WHERE status = 'waiting' AND attempts > 0));"""
_RETRYING_ENTER = """
        INSERT INTO mailq.retrying_emails AS r (email_id, kind, run_at)
        SELECT id, kind, run_at FROM new_rows WHERE status = 'waiting' AND attempts > 0
        ON CONFLICT (email_id) DO UPDATE SET kind = excluded.kind, run_at = excluded.run_at;"""


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


def upgrade() -> None:
    op.execute(
        """
-- The waiting emails that were attempted before (public state `retrying`), with their kind and
-- due time. Kept by the count triggers of mailq.emails in the statement that changes them: an
-- email enters when a failed attempt (or an operator's retry) leaves it waiting, and leaves
-- when it is claimed, cancelled or deleted. Only those emails write here; the claim of an
-- email never attempted reads and writes nothing of it. Usually a handful of rows; all the
-- waiting ones while the backend is down.
CREATE TABLE mailq.retrying_emails (
    email_id  bigint      PRIMARY KEY,
    kind      text        NOT NULL,
    run_at    timestamptz NOT NULL
);
INSERT INTO mailq.retrying_emails (email_id, kind, run_at)
SELECT id, kind, run_at FROM mailq.emails WHERE status = 'waiting' AND attempts > 0;
"""
        + _function(
            _FINISHED_INSERT + _RETRYING_ENTER,
            _FINISHED_DELETE + _RETRYING_LEAVE,
            _FINISHED_UPDATE + _RETRYING_LEAVE + _RETRYING_ENTER,
        )
        + """
-- Counts by kind and public state. The waiting emails come from emails_due_idx alone (kind
-- and run_at are in it: an index-only scan, no visit of the rows), less the retrying ones,
-- which mailq.retrying_emails counts; sending and unknown through their partial indexes,
-- finished ones from mailq.finished_counts. Nothing here grows with the history, and the
-- rows of a backlog are never read.
CREATE OR REPLACE VIEW mailq.queue_stats AS
SELECT kind, state, sum(count)::bigint AS count, max(oldest_due_age) AS oldest_due_age
FROM (
    SELECT e.kind, CASE WHEN e.run_at > now() THEN 'scheduled' ELSE 'queued' END AS state,
           count(*) AS count,
           max(now() - e.run_at) FILTER (WHERE e.run_at <= now()) AS oldest_due_age
    FROM mailq.emails AS e
    WHERE e.status = 'waiting'
      AND NOT EXISTS (SELECT 1 FROM mailq.retrying_emails AS r WHERE r.email_id = e.id)
    GROUP BY 1, 2
    UNION ALL
    SELECT kind, 'retrying', count(*), max(now() - run_at) FILTER (WHERE run_at <= now())
    FROM mailq.retrying_emails GROUP BY 1
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
    )


def downgrade() -> None:
    op.execute(
        _VIEW_0001
        + _function(_FINISHED_INSERT, _FINISHED_DELETE, _FINISHED_UPDATE)
        + "DROP TABLE IF EXISTS mailq.retrying_emails;\n"
    )
