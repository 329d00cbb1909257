"""The operator views (and the monitor's queries over them) read waiting, sending, unknown and
failed rows through their partial indexes, and finished counts from mailq.finished_counts:
they never scan sent emails, however many the table holds. Checked on the executed plans
(EXPLAIN ANALYZE), not on timings. README "Views for psql" has the figures for 1,000,000 rows.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import asyncpg
import pytest

from mailq.db.queries import QUERIES
from tests.db.test_query_plan import _nodes

SENT = 200_000
WAITING = 1_000
FAILED = 300
PARTIAL_INDEXES = {
    "emails_due_idx",
    "emails_sending_idx",
    "emails_unknown_idx",
    "emails_failed_idx",
    # Waiting and unknown emails by address (suppression cancels them): no finished rows.
    "emails_open_address_idx",
    "emails_campaign_open_idx",
}
CONTENT = json.dumps({"from": "a@example.com", "subject": "s", "text": "t"})


@pytest.fixture
async def big_queue(conn: asyncpg.Connection) -> asyncpg.Connection:
    worker = uuid.uuid4()
    await conn.execute(
        """
        INSERT INTO mailq.worker_leases (id, hostname, pid, kinds, concurrency, lease_expires_at)
        VALUES ($1, 'h', 1, '{welcome}', 16, now() + interval '30 seconds')
        """,
        worker,
    )
    await conn.execute(
        """
        INSERT INTO mailq.emails (kind, status, to_address, message_id, content, attempts,
                                  finished_at)
        SELECT (ARRAY['welcome', 'search_engine'])[1 + g % 2], 'sent', 'u' || g || '@x.org',
               '<' || g || '@x>', $1, 1, now() - (g % 30) * interval '1 day'
        FROM generate_series(1, $2::integer) AS g
        """,
        CONTENT,
        SENT,
    )
    await conn.execute(
        """
        INSERT INTO mailq.emails (kind, to_address, message_id, content, run_at)
        SELECT 'search_engine', 'w' || g || '@x.org', '<w' || g || '@x>', $1,
               now() + (g % 3 - 1) * interval '1 hour'
        FROM generate_series(1, $2::integer) AS g
        """,
        CONTENT,
        WAITING,
    )
    await conn.execute(
        """
        INSERT INTO mailq.emails (kind, status, to_address, message_id, content, attempts,
                                  finished_at, last_error)
        SELECT 'welcome', 'failed', 'f' || g || '@x.org', '<f' || g || '@x>', $1, 1, now(), '550'
        FROM generate_series(1, $2::integer) AS g
        """,
        CONTENT,
        FAILED,
    )
    await conn.execute(
        """
        INSERT INTO mailq.attempts (email_id, attempt, started_at, outcome, smtp_code)
        SELECT id, 1, now(), CASE status WHEN 'sent' THEN 'sent' ELSE 'failed' END, 250
        FROM mailq.emails WHERE finished_at IS NOT NULL
        """
    )
    await conn.execute(
        """
        UPDATE mailq.emails SET status = 'sending', worker_id = $1, claimed_at = now(),
                                attempts = 1
        WHERE id IN (SELECT id FROM mailq.emails WHERE status = 'waiting' LIMIT 20)
        """,
        worker,
    )
    await conn.execute("ANALYZE mailq.emails")
    await conn.execute("ANALYZE mailq.attempts")
    return conn


VIEW_QUERIES: dict[str, tuple[str, tuple[Any, ...]]] = {
    "queue_stats": ("SELECT * FROM mailq.queue_stats", ()),
    "pending": ("SELECT * FROM mailq.pending", ()),
    "failed": ("SELECT * FROM mailq.failed", ()),
    "workers": ("SELECT * FROM mailq.workers", ()),
    "email_count_by_state": (QUERIES["email_count_by_state"], ()),
    "email_list_pending": (QUERIES["email_list_pending"], (None, 50)),
    "email_list_pending of a kind": (QUERIES["email_list_pending"], ("search_engine", 50)),
    "email_list_failed": (QUERIES["email_list_failed"], (None, None, 50)),
    "email_list_failed of a kind": (QUERIES["email_list_failed"], ("welcome", None, 50)),
    "worker_lease_list": (QUERIES["worker_lease_list"], ()),
}


async def test_views_do_not_scan_finished_rows(big_queue: asyncpg.Connection) -> None:
    # One test over every query: seeding 200,000 rows once is the slow part.
    problems = {}
    for name, (query, args) in VIEW_QUERIES.items():
        plan = await big_queue.fetchval("EXPLAIN (ANALYZE, FORMAT JSON) " + query, *args)
        problem = _scans_finished_rows(_nodes(json.loads(plan)))
        if problem:
            problems[name] = problem
    assert problems == {}
    # The check itself catches a query that counts by scanning (what the views avoid).
    naive = "SELECT kind, status, count(*) FROM mailq.emails GROUP BY 1, 2"
    plan = await big_queue.fetchval("EXPLAIN (ANALYZE, FORMAT JSON) " + naive)
    assert _scans_finished_rows(_nodes(json.loads(plan)))


def _scans_finished_rows(nodes: list[dict[str, Any]]) -> str | None:
    on_emails = [n for n in nodes if n.get("Relation Name") == "emails"]
    if any(n.get("Node Type") == "Seq Scan" for n in on_emails):
        return "a Seq Scan of mailq.emails"
    indexes = {
        str(n["Index Name"]) for n in nodes if str(n.get("Index Name", "")).startswith("emails_")
    }
    if indexes - PARTIAL_INDEXES:
        return f"read through {sorted(indexes - PARTIAL_INDEXES)}"
    # What the executed plan read from emails: never more than the unfinished + failed rows.
    read = sum(
        int(n.get("Actual Rows", 0)) * int(n.get("Actual Loops", 1))
        + int(n.get("Rows Removed by Filter", 0))
        for n in on_emails
    )
    if read > WAITING + FAILED:
        return f"read {read} rows of mailq.emails"
    return None
