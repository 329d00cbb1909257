"""Forget dead workers: delete the lease rows of workers whose lease expired long ago and
that hold no email any more (the rescue took their emails back first)."""

from __future__ import annotations

import logging
from datetime import datetime

import asyncpg

from mailq.db.connection import RESCUE_LOCK_KEY, schema_try_duty_lock
from mailq.db.leases import worker_lease_delete_expired
from mailq.worker.signals import Signal

logger = logging.getLogger(__name__)

# A dead worker's lease row is kept this long after expiry, for operators to see.
DEAD_WORKER_GRACE_S = 3600.0
FORGET_INTERVAL_S = 60.0
FORGET_BATCH = 1000


class ForgetDeadWorkers:
    def __init__(
        self,
        *,
        grace_s: float = DEAD_WORKER_GRACE_S,
        batch: int = FORGET_BATCH,
        signal: Signal[int] | None = None,
    ) -> None:
        self.name = "forget_workers"
        self.interval_s = FORGET_INTERVAL_S
        self.grace_s = grace_s
        self.batch = batch
        self.signal = signal if signal is not None else Signal()

    async def run(self, pool: asyncpg.Pool, now: datetime | None = None) -> int:
        """Forget workers whose lease expired over `grace_s` before `now`; returns how many.
        Under the rescue's lock: a worker is forgotten only between two rescues."""
        total = 0
        while True:
            async with pool.acquire() as conn, conn.transaction():
                if not await schema_try_duty_lock(conn, RESCUE_LOCK_KEY):
                    break
                forgotten = await worker_lease_delete_expired(conn, self.grace_s, self.batch, now)
            total += forgotten
            if forgotten < self.batch:
                break
        if total:
            logger.info(
                "forgot %d workers whose lease expired long ago",
                total,
                extra={"action": "workers_forgotten", "count": total},
            )
        self.signal.emit(total)
        return total
