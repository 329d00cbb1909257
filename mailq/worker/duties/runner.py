"""Runs a worker's duties, each on its own interval, one after another on one connection
of the pool at a time. Every duty runs once at start; a failed run is logged and tried
again after the duty's interval."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

import asyncpg

from mailq.worker.backoff import Backoff

logger = logging.getLogger(__name__)


class Duty(Protocol):
    name: str
    interval_s: float

    async def run(self, pool: asyncpg.Pool, now: datetime | None = None) -> int: ...


class DutyRunner:
    def __init__(self, pool: asyncpg.Pool, duties: Sequence[Duty]) -> None:
        self._pool = pool
        self.duties = list(duties)
        # A failed duty waits its own interval, as after a run that went well.
        self._backoffs = {
            d.name: Backoff(
                logger,
                f"{d.name} failed; retrying",
                "duty_failed",
                min_s=d.interval_s,
                max_s=d.interval_s,
                extra={"duty": d.name},
            )
            for d in self.duties
        }

    async def run(self) -> None:
        """Until cancelled."""
        loop = asyncio.get_running_loop()
        next_at = {d.name: loop.time() for d in self.duties}
        while True:
            for duty in self.duties:
                if loop.time() < next_at[duty.name]:
                    continue
                backoff = self._backoffs[duty.name]
                try:
                    await duty.run(self._pool)
                    backoff.succeeded()
                    next_at[duty.name] = loop.time() + duty.interval_s
                except Exception as exc:
                    next_at[duty.name] = loop.time() + backoff.failed(exc)
            await asyncio.sleep(max(0.0, min(next_at.values()) - loop.time()))
