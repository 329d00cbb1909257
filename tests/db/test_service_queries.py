"""The service's own statements: finding emails by metadata through the GIN index, and
forgetting expired Idempotency-Keys."""

from __future__ import annotations

import json

import asyncpg

from mailq.db.emails import email_find_by_metadata
from mailq.db.idempotency_keys import idempotency_key_claim, idempotency_key_delete_expired
from mailq.db.queries import QUERIES
from tests.db.test_query_plan import _nodes


async def test_find_by_metadata_uses_the_metadata_index(conn: asyncpg.Connection) -> None:
    content = json.dumps({"from": "a@example.com", "subject": "s", "text": "t"})
    await conn.execute(
        """
        INSERT INTO mailq.emails (kind, status, to_address, message_id, content, attempts,
                                  finished_at, metadata)
        SELECT 'welcome', 'sent', 'u' || g || '@example.com', '<' || g || '@x>', $1, 1, now(),
               CASE WHEN g % 2 = 0 THEN jsonb_build_object('user_id', g)
                    ELSE '{}'::jsonb END
        FROM generate_series(1, 50000) AS g
        """,
        content,
    )
    await conn.execute("ANALYZE mailq.emails")
    candidates = ['{"user_id":"4242"}', '{"user_id":4242}']
    plan = await conn.fetchval(
        "EXPLAIN (FORMAT JSON) " + QUERIES["email_find_by_metadata"], candidates, 100, None
    )
    nodes = _nodes(json.loads(plan))
    assert any(n.get("Index Name") == "emails_metadata_idx" for n in nodes), plan
    found = await email_find_by_metadata(conn, candidates, 100, None)
    assert [json.loads(r["metadata"]) for r in found] == [{"user_id": 4242}]


async def test_expired_idempotency_keys_are_forgotten(conn: asyncpg.Connection) -> None:
    async with conn.transaction():
        assert await idempotency_key_claim(conn, "scope", "old", "h", 24)
        assert await idempotency_key_claim(conn, "scope", "new", "h", 24)
    await conn.execute(
        "UPDATE mailq.idempotency_keys SET created_at = now() - interval '25 hours' "
        "WHERE key = 'old'"
    )
    assert await idempotency_key_delete_expired(conn, 24, 100) == 1
    keys = await conn.fetch("SELECT key FROM mailq.idempotency_keys")
    assert [r["key"] for r in keys] == ["new"]
