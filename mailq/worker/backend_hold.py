"""A provider's request to wait (a 429 with Retry-After): the shared backend bucket is held so
that every worker slows down, once per wait however many emails the refusal answered."""

from __future__ import annotations

import asyncio
import logging

import asyncpg

from mailq.db.connection import DATABASE_ERRORS
from mailq.worker.ratelimit import RateLimiter

logger = logging.getLogger(__name__)

# A second request this close to the end of the current hold does not hold again.
HOLD_SLACK_S = 0.5


class BackendHold:
    def __init__(self, limiter: RateLimiter) -> None:
        self._limiter = limiter
        self._held_until = 0.0  # the loop time until which the backend's bucket is held
        self._tasks: set[asyncio.Task[None]] = set()

    def request(self, pool: asyncpg.Pool, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        until = loop.time() + seconds
        if until <= self._held_until + HOLD_SLACK_S or not self._limiter.applies_to_backend:
            return
        self._held_until = until
        task = loop.create_task(self._hold(pool, seconds), name="mailq-hold-backend")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _hold(self, pool: asyncpg.Pool, seconds: float) -> None:
        try:
            await self._limiter.hold_backend(pool, seconds)
        except DATABASE_ERRORS as exc:
            logger.warning("could not hold the backend's rate limit: %s", exc)
            return
        logger.info(
            "the backend asked to wait %.1f s: its rate limit holds every worker until then",
            seconds,
            extra={"action": "backend_held", "seconds": seconds},
        )
