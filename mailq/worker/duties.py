"""Periodic duties every worker offers and one worker at a time performs (advisory lock):
take back emails of dead workers, forget long-dead workers, prune finished emails
(mailq.admin.prune, which `mailq prune` calls too)."""

from __future__ import annotations

import logging

import asyncpg

from mailq.db.connection import RESCUE_LOCK_KEY, schema_try_duty_lock
from mailq.db.emails import email_rescue_expired
from mailq.db.leases import worker_lease_delete_expired

logger = logging.getLogger(__name__)

RESCUE_BATCH = 1000
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
