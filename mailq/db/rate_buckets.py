"""The only caller of the rate-limit bucket statements (sql/rate_buckets.sql)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from mailq.db.connection import Executor
from mailq.db.queries import QUERIES


async def rate_bucket_configure(
    db: Executor,
    names: Sequence[str],
    rates: Sequence[float],
    bursts: Sequence[float],
    reserves: Sequence[float],
) -> None:
    await db.execute(
        QUERIES["rate_bucket_configure"], list(names), list(rates), list(bursts), list(reserves)
    )


async def rate_bucket_lock(
    conn: asyncpg.Connection, names: Sequence[str]
) -> tuple[list[dict[str, Any]], datetime | None]:
    """Inside a transaction: the buckets, locked, refilled up to now; and that moment."""
    rows = await conn.fetch(QUERIES["rate_bucket_lock"], list(names))
    read_at = rows[0]["read_at"] if rows else None
    keys = ("name", "rate", "burst", "reserve", "tokens")
    return [{k: r[k] for k in keys} for r in rows], read_at


async def rate_bucket_store(
    conn: asyncpg.Connection,
    names: Sequence[str],
    tokens: Sequence[float],
    read_at: datetime | None,
) -> None:
    await conn.execute(QUERIES["rate_bucket_store"], list(names), list(tokens), read_at)


async def rate_bucket_refund(db: Executor, names: Sequence[str], counts: Sequence[float]) -> None:
    await db.execute(QUERIES["rate_bucket_refund"], list(names), list(counts))


async def rate_bucket_hold(db: Executor, name: str, seconds: float) -> None:
    await db.execute(QUERIES["rate_bucket_hold"], name, seconds)
