"""The only caller of the suppression statements (sql/suppressions.sql)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mailq.db.connection import Executor
from mailq.db.queries import QUERIES


async def suppression_add(db: Executor, addresses: Sequence[str], reasons: Sequence[str]) -> int:
    """Add lower-case addresses; returns how many were not on the list before."""
    if not addresses:
        return 0
    return len(await db.fetch(QUERIES["suppression_add"], list(addresses), list(reasons)))


async def suppression_remove(db: Executor, addresses: Sequence[str]) -> list[str]:
    rows = await db.fetch(QUERIES["suppression_remove"], list(addresses))
    return [r["address"] for r in rows]


async def suppression_list(db: Executor, after: str | None, limit: int) -> list[dict[str, Any]]:
    return [dict(r) for r in await db.fetch(QUERIES["suppression_list"], after, limit)]


async def suppression_find(db: Executor, addresses: Sequence[str]) -> list[dict[str, Any]]:
    return [dict(r) for r in await db.fetch(QUERIES["suppression_find"], list(addresses))]
