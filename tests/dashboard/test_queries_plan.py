"""Every query a dashboard page runs reads a bounded part of the database, whatever the size of
its history: the trigger-kept counts, the partial indexes of the unfinished (and failed)
emails, a bounded range of the primary key, or attempts by time through their BRIN index.
Checked on executed plans (EXPLAIN ANALYZE) over 200,000 sent emails, not on timings (the
counts by state read none of the 1,000 waiting emails); the
timings at 10,000,000 are the benchmark's (`python -m bench --only dashboard`)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from mailq.db.dashboard import EmailFilter
from mailq.db.queries import QUERIES
from mailq.service.dashboard.emails import WALK_IDS
from tests.db.test_query_plan import _nodes

SENT = 200_000
WAITING = 1_000
CAMPAIGN_WAITING = 300
FAILED = 300
UNKNOWN = 20
CONTENT = json.dumps({"from": "a@example.com", "subject": "s", "text": "t"})
# Sent emails finish 10 a second into the past from now: 200,000 span 5.6 hours.
SPACING_S = 0.1
# The unfinished and failed emails: all that a query may read through a partial index.
OPEN_ROWS = WAITING + CAMPAIGN_WAITING + FAILED + UNKNOWN + 50
# The counts by state read no backlog: the sending and unknown emails, the first due entry
# per kind and priority, and the waiting ones due in the next 10 seconds (none here).
COUNTS_ROWS = 20 + UNKNOWN + 2 * 10 + 10
# The overview reads the counts, the longest-due email (a probe per kind and priority), the
# workers' emails in flight, and a campaign's sending and unknown emails: none of the
# campaign's waiting recipients.
OVERVIEW_ROWS = COUNTS_ROWS + 2 * 10 + 20 + 20 + UNKNOWN


@pytest.fixture
async def history(conn: asyncpg.Connection) -> asyncpg.Connection:
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
                                  metadata, created_at, run_at, finished_at)
        SELECT (ARRAY['welcome', 'search_engine'])[1 + g % 2], 'sent', 'u' || g || '@x.org',
               '<' || g || '@x>', $1, 1,
               CASE WHEN g % 100 = 0 THEN jsonb_build_object('order', g::text) ELSE '{}' END,
               t, t, t
        FROM generate_series(1, $2::integer) AS g
        CROSS JOIN LATERAL (SELECT now() - ($2 - g) * make_interval(secs => $3)) AS x(t)
        """,
        CONTENT,
        SENT,
        SPACING_S,
    )
    await conn.execute(
        """
        INSERT INTO mailq.attempts (email_id, attempt, started_at, finished_at, outcome, smtp_code)
        SELECT id, 1, finished_at, finished_at, 'sent', 250 FROM mailq.emails ORDER BY id
        """
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
        WITH campaign AS (
            INSERT INTO mailq.campaigns (name, kind, send_at, priority, max_attempts, content)
            VALUES ('c', 'search_engine', now() - interval '1 hour', 0, 5, '{}')
            RETURNING id
        )
        INSERT INTO mailq.emails (kind, status, to_address, message_id, content, attempts,
                                  campaign_id, run_at, finished_at)
        SELECT 'search_engine', CASE WHEN g <= 2 THEN 'sent' ELSE 'waiting' END,
               'c' || g || '@x.org', '<c' || g || '@x>', '{}', (g <= 2)::integer, c.id,
               now() - interval '1 hour', CASE WHEN g <= 2 THEN now() END
        FROM campaign AS c CROSS JOIN generate_series(1, $1::integer + 2) AS g
        """,
        CAMPAIGN_WAITING,
    )
    await conn.execute(
        """
        WITH made AS (
            INSERT INTO mailq.emails (kind, status, to_address, message_id, content, attempts,
                                      finished_at, last_error)
            SELECT 'welcome', 'failed', 'f' || g || '@d' || g % 7 || '.org', '<f' || g || '@x>',
                   $1, 1, now() - g * interval '1 minute', '550'
            FROM generate_series(1, $2::integer) AS g
            RETURNING id, finished_at
        )
        INSERT INTO mailq.attempts (email_id, attempt, started_at, finished_at, outcome, smtp_code)
        SELECT id, 1, finished_at, finished_at, 'failed', 550 FROM made
        """,
        CONTENT,
        FAILED,
    )
    await conn.execute(
        """
        INSERT INTO mailq.emails (kind, status, to_address, message_id, content, attempts)
        SELECT 'welcome', 'unknown', 'q' || g || '@x.org', '<q' || g || '@x>', $1, 1
        FROM generate_series(1, $2::integer) AS g
        """,
        CONTENT,
        UNKNOWN,
    )
    await conn.execute(
        """
        UPDATE mailq.emails SET status = 'sending', worker_id = $1, claimed_at = now(),
                                attempts = 1
        WHERE id IN (SELECT id FROM mailq.emails WHERE status = 'waiting' LIMIT 20)
        """,
        worker,
    )
    await conn.execute(
        "INSERT INTO mailq.audit_log (actor, action, target_type, target, email_ids) "
        "VALUES ('admin x', 'emails.retry', 'emails', 'selection', ARRAY[5, 6]::bigint[])"
    )
    # What autovacuum does to a table that grows: summarise the BRIN ranges, set the
    # visibility map; then fresh statistics.
    await conn.execute("VACUUM ANALYZE mailq.attempts")
    await conn.execute("VACUUM ANALYZE mailq.emails")
    return conn


def _walk(where: EmailFilter, top: int, statuses: list[str] | None = None) -> tuple[Any, ...]:
    return (*where.arguments(), top + 1, top + 1 - WALK_IDS, statuses, 50)


def _queries(now: datetime, top: int) -> dict[str, tuple[str, tuple[Any, ...], int, int]]:
    """name: (query, arguments, most emails rows it may read, most attempts rows)."""
    minute = now.replace(second=0, microsecond=0)
    hour_ago = minute - timedelta(hours=1)
    none = EmailFilter()
    by_address = EmailFilter(address="u199999@x.org")
    metadata = EmailFilter(metadata=json.dumps({"order": "199900"}), kind="welcome")
    week = now - timedelta(days=7)
    # Attempts in an hour at 10/s, plus the BRIN's granularity (whole page ranges).
    hour_attempts = 36_000 + 5_000
    return {
        "counts": (QUERIES["email_count_by_state"], (), COUNTS_ROWS, 0),
        "overview": (QUERIES["dashboard_overview"], (14, 10), OVERVIEW_ROWS, 6_000),
        "campaign progress from counts": (QUERIES["dashboard_campaign_progress"], ([1, 2],),
                                          2 * 20 + UNKNOWN, 0),
        "workers": (QUERIES["worker_lease_list"], (), OPEN_ROWS, 0),
        "paused kinds": (QUERIES["kind_list_paused"], (), 0, 0),
        "open campaigns": (QUERIES["campaign_progress_open"], (10,), OPEN_ROWS, 0),
        "rate minutes": (QUERIES["dashboard_rate_minutes"], (minute - timedelta(days=1),), 0, 0),
        "rate fill of an hour": (QUERIES["dashboard_rate_fill"], (hour_ago, minute), 0,
                                 hour_attempts),
        "email walk": (QUERIES["dashboard_email_walk"], _walk(none, top), WALK_IDS, 0),
        "email walk by address": (QUERIES["dashboard_email_walk"], _walk(by_address, top),
                                  WALK_IDS, 0),
        "email walk by state": (QUERIES["dashboard_email_walk"],
                                _walk(EmailFilter(state="queued"), top, ["waiting"]), WALK_IDS, 0),
        "email walk by metadata": (QUERIES["dashboard_email_walk"], _walk(metadata, top),
                                   WALK_IDS, 0),
        "time range bisection": (QUERIES["dashboard_email_id_at"], (now - timedelta(hours=1), top),
                                 2 * 2 * 20, 0),
        "cancellable": (QUERIES["dashboard_email_cancellable"], (*none.arguments(), 100_000),
                        OPEN_ROWS, 0),
        "retryable of a kind": (QUERIES["dashboard_email_retryable"],
                                (*EmailFilter(kind="welcome").arguments(), 100_000), OPEN_ROWS, 0),
        "email detail": (QUERIES["dashboard_email_detail"], (top // 2,), 1, 0),
        "email attempts": (QUERIES["email_attempts"], (top // 2,), 0, 1),
        "email audit": (QUERIES["audit_log_for_email"], (5, 20), 0, 0),
        "unknown": (QUERIES["dashboard_unknown_list"], (0, 100), OPEN_ROWS, 0),
        "failure groups, 7 days": (QUERIES["dashboard_failure_groups"], (week, 20_000),
                                   OPEN_ROWS, FAILED),
        "failure group emails": (QUERIES["dashboard_failure_group_emails"],
                                 (week, 20_000, 550, "d3.org", False), OPEN_ROWS, FAILED),
        "buckets": (QUERIES["dashboard_rate_buckets"], (), 0, 0),
        "campaign rate": (QUERIES["dashboard_campaign_rate"], (1, 600.0), 0, 0),
        "breakers": (QUERIES["backend_breaker_list"], (), 0, 0),
        "event rates of a campaign": (QUERIES["dashboard_event_rates_campaign"], (1,), 0, 0),
    }  # fmt: skip


async def test_every_dashboard_query_reads_a_bounded_part(history: asyncpg.Connection) -> None:
    now = await history.fetchval("SELECT now()")
    top = await history.fetchval(QUERIES["dashboard_email_max_id"])
    problems = {}
    for name, (query, args, emails_max, attempts_max) in _queries(now, top).items():
        # Rolled back: the rollup's INSERT leaves the next query the same tables.
        transaction = history.transaction()
        await transaction.start()
        try:
            plan = await history.fetchval("EXPLAIN (ANALYZE, FORMAT JSON) " + query, *args)
        finally:
            await transaction.rollback()
        problem = _reads_too_much(_nodes(json.loads(plan)), emails_max, attempts_max)
        if problem:
            problems[name] = problem
    assert problems == {}
    # The bisection finds what a scan would (ids are handed out in creation order).
    for moment in (now - timedelta(days=1), now - timedelta(hours=2), now + timedelta(hours=1)):
        found = await history.fetchval(QUERIES["dashboard_email_id_at"], moment, top)
        scanned = await history.fetchval(
            "SELECT coalesce(min(id), $2 + 1) FROM mailq.emails WHERE created_at >= $1", moment, top
        )
        assert found == scanned, moment
    # The check catches the naive plans the dashboard avoids: counting by scanning, and
    # attempts of a day by scanning them all.
    naive = "SELECT status, count(*) FROM mailq.emails GROUP BY 1"
    plan = await history.fetchval("EXPLAIN (ANALYZE, FORMAT JSON) " + naive)
    assert _reads_too_much(_nodes(json.loads(plan)), OPEN_ROWS, 0)
    naive = (
        "SELECT kind, mailq.email_state(status, run_at, attempts), count(*) FROM mailq.emails "
        "WHERE status = 'waiting' GROUP BY 1, 2"
    )
    plan = await history.fetchval("EXPLAIN (ANALYZE, FORMAT JSON) " + naive)
    assert _reads_too_much(_nodes(json.loads(plan)), COUNTS_ROWS, 0)
    # Counting a campaign's open emails by state reads its waiting recipients.
    plan = await history.fetchval(
        "EXPLAIN (ANALYZE, FORMAT JSON) " + QUERIES["campaign_progress_open"], 10
    )
    assert _reads_too_much(_nodes(json.loads(plan)), OVERVIEW_ROWS, 0)
    naive = "SELECT count(*) FROM mailq.attempts WHERE smtp_code = 250"
    plan = await history.fetchval("EXPLAIN (ANALYZE, FORMAT JSON) " + naive)
    assert _reads_too_much(_nodes(json.loads(plan)), 0, 6_000)


async def test_the_rollup_counts_minutes_once_and_the_brin_finds_them(
    history: asyncpg.Connection,
) -> None:
    now = await history.fetchval("SELECT now()")
    end = now.replace(second=0, microsecond=0) - timedelta(minutes=2)
    start = end - timedelta(minutes=30)
    await history.execute(QUERIES["dashboard_rate_fill"], start, end)
    rows = await history.fetch(QUERIES["dashboard_rate_minutes"], start)
    assert len(rows) == 30
    expected = await history.fetchval(
        "SELECT count(*) FROM mailq.attempts WHERE outcome = 'sent' "
        "AND finished_at >= $1 AND finished_at < $2",
        start,
        end,
    )
    assert sum(r["sent"] for r in rows) == expected > 0
    # A second fill leaves counted minutes alone.
    await history.execute(QUERIES["dashboard_rate_fill"], start, end)
    assert len(await history.fetch(QUERIES["dashboard_rate_minutes"], start)) == 30
    plan = await history.fetchval(
        "EXPLAIN (FORMAT JSON) " + QUERIES["dashboard_rate_fill"], start, end
    )
    names = {n.get("Index Name") for n in _nodes(json.loads(plan))}
    assert "attempts_finished_brin" in names
    assert datetime.now(UTC) > start


def _reads_too_much(nodes: list[dict[str, Any]], emails_max: int, attempts_max: int) -> str | None:
    for relation, most in (("emails", emails_max), ("attempts", attempts_max)):
        on = [n for n in nodes if n.get("Relation Name") == relation]
        if any(n.get("Node Type") == "Seq Scan" for n in on):
            return f"a Seq Scan of mailq.{relation}"
        read = sum(
            int(n.get("Actual Rows", 0)) * int(n.get("Actual Loops", 1))
            + int(n.get("Rows Removed by Filter", 0))
            + int(n.get("Rows Removed by Index Recheck", 0))
            for n in on
        )
        if read > most:
            return f"read {read} rows of mailq.{relation} (at most {most})"
    return None
