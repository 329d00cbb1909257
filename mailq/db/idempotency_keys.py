"""The only caller of the Idempotency-Key statements (sql/idempotency_keys.sql)."""

from __future__ import annotations

from typing import Any

import asyncpg

from mailq.db.connection import Executor
from mailq.db.queries import QUERIES


async def idempotency_key_claim(
    conn: asyncpg.Connection, scope: str, key: str, request_hash: str, keep_hours: float
) -> bool:
    """In the caller's transaction: True when this request holds the key now."""
    return bool(
        await conn.fetchval(QUERIES["idempotency_key_claim"], scope, key, request_hash, keep_hours)
    )


async def idempotency_key_get(db: Executor, scope: str, key: str) -> dict[str, Any] | None:
    row = await db.fetchrow(QUERIES["idempotency_key_get"], scope, key)
    return None if row is None else dict(row)


async def idempotency_key_complete(
    conn: asyncpg.Connection, scope: str, key: str, status: int, response: str
) -> None:
    await conn.execute(QUERIES["idempotency_key_complete"], scope, key, status, response)


async def idempotency_key_delete_expired(db: Executor, keep_hours: float, limit: int) -> int:
    return len(await db.fetch(QUERIES["idempotency_key_delete_expired"], keep_hours, limit))
