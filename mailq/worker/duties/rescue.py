"""Rescue: take back the emails of workers whose lease expired (killed, host gone).

Each email gets an attempt recorded as `lost` and waits again, or fails when that was its
last attempt, or becomes `unknown` when SMTP DATA had begun for a `hold` kind (see the SQL
of email_rescue_expired).
"""

from __future__ import annotations

import logging
from datetime import datetime

import asyncpg

from mailq.db.connection import RESCUE_LOCK_KEY, schema_try_duty_lock
from mailq.db.emails import email_rescue_expired
from mailq.worker.signals import Signal

logger = logging.getLogger(__name__)

RESCUE_BATCH = 1000
# Rescue runs every lease/5 seconds, and at least this often.
RESCUE_INTERVAL_MAX_S = 5.0


class RescueExpired:
    def __init__(
        self, lease_s: float, *, batch: int = RESCUE_BATCH, signal: Signal[int] | None = None
    ) -> None:
        self.name = "rescue"
        self.interval_s = min(lease_s / 5, RESCUE_INTERVAL_MAX_S)
        self.batch = batch
        self.signal = signal if signal is not None else Signal()

    async def run(self, pool: asyncpg.Pool, now: datetime | None = None) -> int:
        """Take back what workers whose lease had expired by `now` held; returns how many."""
        total = 0
        while True:
            async with pool.acquire() as conn, conn.transaction():
                if not await schema_try_duty_lock(conn, RESCUE_LOCK_KEY):
                    break  # another worker is rescuing right now
                rescued = await email_rescue_expired(conn, self.batch, now)
            total += len(rescued)
            if rescued:
                logger.warning(
                    "took back %d emails from workers whose lease expired",
                    len(rescued),
                    extra={"action": "rescued", "count": len(rescued)},
                )
            if len(rescued) < self.batch:
                break
        self.signal.emit(total)
        return total
