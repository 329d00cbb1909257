"""Periodic duties every worker offers and one worker at a time performs (advisory lock):
take back emails of dead workers, forget long-dead workers, prune finished emails."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import asyncpg

from mailq.db.connection import PRUNE_LOCK_KEY, RESCUE_LOCK_KEY, schema_try_duty_lock
from mailq.db.emails import email_delete_finished, email_rescue_expired
from mailq.db.leases import worker_lease_delete_expired

logger = logging.getLogger(__name__)

RESCUE_BATCH = 1000
PRUNE_BATCH = 5000
PRUNE_INTERVAL_S = 600.0
# A dead worker's lease row is kept this long after expiry, for operators to see.
DEAD_WORKER_GRACE_S = 3600.0


async def rescue_expired(pool: asyncpg.Pool) -> int:
    """Take back the emails of workers whose lease expired; returns how many."""
    total = 0
    while True:
        async with pool.acquire() as conn, conn.transaction():
            if not await schema_try_duty_lock(conn, RESCUE_LOCK_KEY):
                return total
            rescued = await email_rescue_expired(conn, RESCUE_BATCH)
            if len(rescued) < RESCUE_BATCH:
                await worker_lease_delete_expired(conn, DEAD_WORKER_GRACE_S)
        total += len(rescued)
        if rescued:
            logger.warning(
                "took back %d emails from workers whose lease expired",
                len(rescued),
                extra={"action": "rescued", "count": len(rescued)},
            )
        if len(rescued) < RESCUE_BATCH:
            return total


async def prune_finished(
    pool: asyncpg.Pool,
    retention: timedelta,
    *,
    on_batch: Callable[[int], None] | None = None,
) -> int | None:
    """Delete finished emails older than `retention`, in batches; returns how many, or None
    when another process holds the prune lock (it is pruning right now)."""
    before = datetime.now(UTC) - retention
    total = 0
    while True:
        async with pool.acquire() as conn, conn.transaction():
            if not await schema_try_duty_lock(conn, PRUNE_LOCK_KEY):
                return total if total else None
            deleted = await email_delete_finished(conn, before, PRUNE_BATCH)
        total += deleted
        if on_batch is not None:
            on_batch(deleted)
        if deleted < PRUNE_BATCH:
            if total:
                logger.info(
                    "pruned %d finished emails", total, extra={"action": "pruned", "count": total}
                )
            return total
