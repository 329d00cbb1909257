"""Prune: delete emails (and their attempts) that finished longer ago than the retention.
`mailq prune` (mailq.admin.prune) runs the same batches on demand."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import asyncpg

from mailq.db.connection import PRUNE_LOCK_KEY, schema_try_duty_lock
from mailq.db.emails import email_delete_finished
from mailq.worker.signals import Signal

logger = logging.getLogger(__name__)

PRUNE_BATCH = 5000
PRUNE_INTERVAL_S = 600.0


async def prune_finished(
    pool: asyncpg.Pool,
    retention: timedelta,
    *,
    on_batch: Callable[[int], None] | None = None,
    now: datetime | None = None,
    batch: int = PRUNE_BATCH,
) -> int | None:
    """Delete emails that finished more than `retention` before `now` (None: this host's
    clock), in batches; returns how many, or None when another process holds the prune lock
    (it is pruning right now)."""
    before = (now or datetime.now(UTC)) - retention
    total = 0
    while True:
        async with pool.acquire() as conn, conn.transaction():
            if not await schema_try_duty_lock(conn, PRUNE_LOCK_KEY):
                return total if total else None
            deleted = await email_delete_finished(conn, before, batch)
        total += deleted
        if on_batch is not None:
            on_batch(deleted)
        if deleted < batch:
            if total:
                logger.info(
                    "pruned %d finished emails", total, extra={"action": "pruned", "count": total}
                )
            return total


class PruneFinished:
    def __init__(
        self, retention: timedelta, *, batch: int = PRUNE_BATCH, signal: Signal[int] | None = None
    ) -> None:
        self.name = "prune"
        self.interval_s = PRUNE_INTERVAL_S
        self.retention = retention
        self.batch = batch
        self.signal = signal if signal is not None else Signal()

    async def run(self, pool: asyncpg.Pool, now: datetime | None = None) -> int:
        pruned = await prune_finished(pool, self.retention, now=now, batch=self.batch) or 0
        self.signal.emit(pruned)
        return pruned
