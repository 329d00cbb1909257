"""Rescue: take back the emails of workers whose lease expired (killed, host gone).

Each email gets an attempt recorded as `lost` and waits again where it was in its queue, or
fails when that was its last attempt, or becomes `unknown` when SMTP DATA had begun for a
`hold` kind (see the SQL of email_rescue_expired).

A dead worker and a dead database look alike from the lease alone: when the database was
unreachable, every lease expired, though no worker died. So the rescue takes back only
claims whose lease expired more than a grace (half a lease) ago, and a worker rescues only
once it has itself been connected for longer than a lease, with its own lease proven: after
an outage the workers that were cut off with the database register again first (their
heartbeats retry at least every quarter lease), and keep what they hold.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

import asyncpg

from mailq.db.connection import RESCUE_LOCK_KEY, schema_try_duty_lock
from mailq.db.emails import email_rescue_expired
from mailq.worker.signals import Signal

logger = logging.getLogger(__name__)

RESCUE_BATCH = 1000
# Rescue runs every lease/5 seconds, and at least this often.
RESCUE_INTERVAL_MAX_S = 5.0


def _always() -> bool:
    return True


class RescueExpired:
    def __init__(
        self,
        lease_s: float,
        *,
        batch: int = RESCUE_BATCH,
        signal: Signal[int] | None = None,
        grace_s: float | None = None,
        may_rescue: Callable[[], bool] = _always,
    ) -> None:
        """`may_rescue()`: whether this worker may take back claims now (connected for more
        than a lease, its own lease proven); `grace_s` (default half a lease): how long a
        lease must have been expired."""
        self.name = "rescue"
        self.interval_s = min(lease_s / 5, RESCUE_INTERVAL_MAX_S)
        self.batch = batch
        self.signal = signal if signal is not None else Signal()
        self.grace_s = lease_s / 2 if grace_s is None else grace_s
        self._may_rescue = may_rescue

    async def run(self, pool: asyncpg.Pool, now: datetime | None = None) -> int:
        """Take back what workers whose lease had expired a grace before `now` held; returns
        how many (0 while this worker may not rescue)."""
        total = 0
        while self._may_rescue():
            async with pool.acquire() as conn, conn.transaction():
                if not await schema_try_duty_lock(conn, RESCUE_LOCK_KEY):
                    break  # another worker is rescuing right now
                rescued = await email_rescue_expired(conn, self.batch, now, self.grace_s)
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
