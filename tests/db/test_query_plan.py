"""The claim reads only due rows through the partial index, however many finished rows
the table holds; an event finds a sent email by Message-ID through its index; suppressing
an address finds its open emails through indexes, in campaigns or not; the outcome
statement reads only its own emails, whatever plan a worker's connection has cached."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import asyncpg

from mailq.db.claims import email_claim_due
from mailq.db.queries import QUERIES
from mailq.kinds import ClaimPlan

CONTENT = json.dumps({"from": "a@example.com", "subject": "s", "text": "t"})


async def sent_emails(conn: asyncpg.Connection, kind: str, count: int) -> None:
    """`count` finished emails: recipient u<n>@example.com, Message-ID <n in 32 hex digits@x>."""
    await conn.execute(
        """
        INSERT INTO mailq.emails (kind, status, to_address, message_id, content, attempts,
                                  finished_at)
        SELECT $1, 'sent', 'u' || g || '@example.com', '<' || lpad(to_hex(g), 32, '0') || '@x>',
               $2, 1, now()
        FROM generate_series(1, $3::integer) AS g
        """,
        kind,
        CONTENT,
        count,
    )


async def test_the_claim_uses_the_due_index_next_to_many_finished_rows(
    conn: asyncpg.Connection,
) -> None:
    await sent_emails(conn, "search_engine", 100_000)
    await conn.execute(
        """
        INSERT INTO mailq.emails (kind, to_address, message_id, content)
        SELECT 'search_engine', 'd' || g || '@example.com', '<d' || g || '@x>', $1
        FROM generate_series(1, 10000) AS g
        """,
        CONTENT,
    )
    await conn.execute("ANALYZE mailq.emails")
    plan = await conn.fetchval(
        "EXPLAIN (FORMAT JSON) " + QUERIES["email_claim_due"],
        ["search_engine"],
        [100],
        uuid.uuid4(),
        None,
        100,
        "smtp://relay.example.com:25",
        [],
        [],
    )
    nodes = _nodes(json.loads(plan))
    assert any(n.get("Index Name") == "emails_due_idx" for n in nodes)
    assert not [
        n for n in nodes if n.get("Node Type") == "Seq Scan" and n.get("Relation Name") == "emails"
    ]


def _nodes(plan: object) -> list[dict[str, object]]:
    found: list[dict[str, object]] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            found.append(node)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(plan)
    return found


async def test_an_event_finds_a_sent_email_by_message_id_through_its_index(
    conn: asyncpg.Connection,
) -> None:
    await sent_emails(conn, "welcome", 20_000)
    await conn.execute("ANALYZE mailq.emails")
    wanted = "<" + format(777, "032x") + "@x>"
    found = await conn.fetchrow(QUERIES["event_match_email"], None, wanted, None)
    assert found is not None and found["to_address"] == "u777@example.com"
    plan = await conn.fetchval(
        "EXPLAIN (FORMAT JSON) " + QUERIES["event_match_email"], None, wanted, None
    )
    nodes = _nodes(json.loads(plan))
    assert any(n.get("Index Name") == "emails_message_id_sent_btree" for n in nodes)
    assert not [
        n for n in nodes if n.get("Node Type") == "Seq Scan" and n.get("Relation Name") == "emails"
    ]


async def test_suppressing_an_address_finds_its_open_emails_in_campaigns_through_indexes(
    conn: asyncpg.Connection,
) -> None:
    # Campaign emails are not in the open-address index (0014): they are found through the
    # campaign-recipient index, one look-up per campaign.
    await sent_emails(conn, "welcome", 20_000)
    await conn.execute(
        """
        INSERT INTO mailq.campaigns (name, kind, send_at, content, priority)
        SELECT 'c' || g, 'news', now(), '{}', 5 FROM generate_series(1, 20) AS g
        """
    )
    await conn.execute(
        """
        INSERT INTO mailq.emails (kind, to_address, message_id, content, campaign_id)
        SELECT 'news', 'r' || g || '@example.com', '<c' || c.id || '-' || g || '@x>', '{}', c.id
        FROM mailq.campaigns AS c CROSS JOIN generate_series(1, 2000) AS g
        """
    )
    await conn.execute(
        """
        INSERT INTO mailq.emails (kind, to_address, message_id, content)
        SELECT 'welcome', 'r' || g || '@example.com', '<w' || g || '@x>', '{}'
        FROM generate_series(1, 2000) AS g
        """
    )
    await conn.execute("ANALYZE mailq.emails")
    await conn.execute("ANALYZE mailq.campaigns")
    addresses = ["r7@example.com", "r9@example.com"]
    transaction = conn.transaction()
    await transaction.start()
    try:
        plan = await conn.fetchval(
            "EXPLAIN (ANALYZE, FORMAT JSON) " + QUERIES["email_cancel_by_address"],
            addresses,
            "suppressed: test",
            None,
        )
    finally:
        await transaction.rollback()
    nodes = _nodes(json.loads(plan))
    on_emails = [n for n in nodes if n.get("Relation Name") == "emails"]
    assert not [n for n in on_emails if n.get("Node Type") == "Seq Scan"]
    indexes = {n.get("Index Name") for n in nodes}
    assert {"emails_open_address_idx", "emails_campaign_recipient_idx"} <= indexes
    # 2 addresses: in each of the 20 campaigns and outside them, 42 emails cancelled.
    (update,) = [n for n in nodes if n.get("Node Type") == "ModifyTable"]
    assert update["Actual Rows"] == 42
    cancelled = await conn.fetch(
        QUERIES["email_cancel_by_address"], addresses, "suppressed: test", None
    )
    assert len(cancelled) == 42


async def test_the_outcome_statement_reads_only_its_emails_with_a_plan_made_on_empty_tables(
    conn: asyncpg.Connection,
) -> None:
    # A worker's connection keeps the generic plan it made once (PostgreSQL's plan cache,
    # replaced only when the tables are analyzed again): made while mailq.attempts and
    # mailq.campaigns were empty, the statement scanned all of the worker's attempts, and
    # read every email of a campaign for each retry, on every outcome, slower with each email
    # sent (for good with autovacuum off). The generic plan is forced here, and made on the
    # empty tables, as such a connection has it.
    worker = uuid.uuid4()
    await sent_emails(conn, "welcome", 5_000)
    await conn.execute("ANALYZE")
    await conn.execute("SET plan_cache_mode = force_generic_plan")
    finish = await conn.prepare(QUERIES["email_finish"])
    assert await finish.fetch([], [], [], [], [], [], [], [], worker, None, []) == []
    await conn.execute(
        """
        INSERT INTO mailq.attempts (email_id, attempt, worker_id, started_at, outcome)
        SELECT id, 1, $1, now(), 'sent' FROM mailq.emails
        """,
        worker,
    )
    await conn.execute(
        """
        INSERT INTO mailq.campaigns (name, kind, send_at, content, priority)
        VALUES ('news', 'news', now(), '{}', 5)
        """
    )
    await conn.execute(
        """
        INSERT INTO mailq.emails (kind, to_address, message_id, content, campaign_id)
        SELECT 'news', 'r' || g || '@example.com', '<c' || g || '@x>', $1, c.id
        FROM mailq.campaigns AS c CROSS JOIN generate_series(1, 5000) AS g
        """,
        CONTENT,
    )
    claimed = await email_claim_due(conn, ClaimPlan(["news"], [16], 16), worker)
    assert len(claimed) == 16
    now = datetime.now(UTC)
    transaction = conn.transaction()
    await transaction.start()
    try:
        before = await rows_read(conn)
        applied = await finish.fetch(
            [e.id for e in claimed],
            [e.attempt for e in claimed],
            ["sent"] * 8 + ["retry"] * 8,  # a retry looks up its campaign
            [now] * 16,
            [None] * 16,
            [None] * 16,
            [None] * 16,
            [60.0] * 16,
            worker,
            None,
            [None] * 16,
        )
        after = await rows_read(conn)
    finally:
        await transaction.rollback()
        await conn.execute("RESET plan_cache_mode")
    assert len(applied) == 16
    read = {key: after[key] - before[key] for key in after}
    # The 16 emails and their campaign looked up by key: not the 5,000 attempts, nor the
    # campaign's 5,000 emails for each retry.
    assert read["attempts"] == 0
    assert read["emails"] <= 3 * 16
    assert read["campaigns"] <= 8


async def rows_read(conn: asyncpg.Connection) -> dict[str, int]:
    """Rows this session has read from the hot tables so far (scanned or fetched by index)."""
    rows = await conn.fetch(
        """
        SELECT relname, seq_tup_read + coalesce(idx_tup_fetch, 0) AS read
        FROM pg_stat_xact_user_tables
        WHERE schemaname = 'mailq' AND relname IN ('emails', 'attempts', 'campaigns')
        """
    )
    return {r["relname"]: r["read"] for r in rows}
