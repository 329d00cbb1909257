"""The only caller of the bounce-breaker statements (sql/bounce_breakers.sql)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from mailq.db.connection import Executor
from mailq.db.queries import QUERIES


async def bounce_breaker_get(db: Executor, scope: str, key: str) -> dict[str, Any] | None:
    row = await db.fetchrow(QUERIES["bounce_breaker_get"], scope, key)
    return dict(row) if row is not None else None


async def bounce_breaker_trip(
    db: Executor,
    scope: str,
    key: str,
    reason: str,
    counts: dict[str, int],
    now: datetime | None = None,
) -> None:
    await db.execute(
        QUERIES["bounce_breaker_trip"],
        scope,
        key,
        reason,
        counts["sent"],
        counts["hard_bounced"],
        counts["complained"],
        now,
    )


async def bounce_breaker_list(db: Executor) -> list[dict[str, Any]]:
    return [dict(r) for r in await db.fetch(QUERIES["bounce_breaker_list"])]
