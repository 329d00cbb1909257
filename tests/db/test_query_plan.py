"""The claim reads only due rows through the partial index, however many finished rows
the table holds."""

from __future__ import annotations

import json
import uuid

import asyncpg

from mailq.db.queries import QUERIES


async def test_the_claim_uses_the_due_index_next_to_many_finished_rows(
    conn: asyncpg.Connection,
) -> None:
    content = json.dumps({"from": "a@example.com", "subject": "s", "text": "t"})
    await conn.execute(
        """
        INSERT INTO mailq.emails (kind, status, to_address, message_id, content, attempts,
                                  finished_at)
        SELECT 'search_engine', 'sent', 'u' || g || '@example.com', '<' || g || '@x>', $1,
               1, now()
        FROM generate_series(1, 100000) AS g
        """,
        content,
    )
    await conn.execute(
        """
        INSERT INTO mailq.emails (kind, to_address, message_id, content)
        SELECT 'search_engine', 'd' || g || '@example.com', '<d' || g || '@x>', $1
        FROM generate_series(1, 10000) AS g
        """,
        content,
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
    content = json.dumps({"from": "a@example.com", "subject": "s", "text": "t"})
    await conn.execute(
        """
        INSERT INTO mailq.emails (kind, status, to_address, message_id, content, attempts,
                                  finished_at)
        SELECT 'welcome', 'sent', 'u' || g || '@example.com',
               '<' || lpad(to_hex(g), 32, '0') || '@x>', $1, 1, now()
        FROM generate_series(1, 20000) AS g
        """,
        content,
    )
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
