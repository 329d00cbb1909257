"""The only caller of the suppression statements (sql/suppressions.sql)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from mailq.db.connection import Executor
from mailq.db.queries import QUERIES


async def suppression_add(
    db: Executor,
    addresses: Sequence[str],
    reasons: Sequence[str],
    expires_at: datetime | None = None,
) -> int:
    """Add lower-case addresses (until `expires_at`, or for good); returns how many were not on
    the list before (or replaced an expiring suppression)."""
    if not addresses:
        return 0
    rows = await db.fetch(QUERIES["suppression_add"], list(addresses), list(reasons), expires_at)
    return len(rows)


async def suppression_remove(db: Executor, addresses: Sequence[str]) -> list[str]:
    rows = await db.fetch(QUERIES["suppression_remove"], list(addresses))
    return [r["address"] for r in rows]


async def suppression_list(db: Executor, after: str | None, limit: int) -> list[dict[str, Any]]:
    return [dict(r) for r in await db.fetch(QUERIES["suppression_list"], after, limit)]


async def suppression_find(db: Executor, addresses: Sequence[str]) -> list[dict[str, Any]]:
    return [dict(r) for r in await db.fetch(QUERIES["suppression_find"], list(addresses))]


async def suppression_delete_expired(
    db: Executor, limit: int, now: datetime | None = None
) -> list[str]:
    rows = await db.fetch(QUERIES["suppression_delete_expired"], limit, now)
    return [r["address"] for r in rows]
