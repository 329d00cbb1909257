"""Prune: delete emails (and their attempts) that finished longer ago than the retention.
`mailq prune` (mailq.admin.prune) runs the same batches on demand."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import asyncpg

from mailq import admin
from mailq.admin import PRUNE_BATCH
from mailq.db.suppressions import suppression_delete_expired
from mailq.worker.signals import Signal

logger = logging.getLogger(__name__)

PRUNE_INTERVAL_S = 600.0


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
        pruned = await admin.prune(pool, self.retention, now=now, batch=self.batch) or 0
        # Suppressions that ended (soft bounces) no longer block; their rows go too.
        await suppression_delete_expired(pool, self.batch, now)
        self.signal.emit(pruned)
        return pruned
