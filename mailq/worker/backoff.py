"""The worker's one way to live through a database that went away: log, wait, try again.

Every loop of the worker (claims, outcome recording, duties, the control connection) catches
a failure, logs it once with its `action` key, waits a little longer each time in a row
(`DB_RETRY_MIN_S` doubling up to `DB_RETRY_MAX_S`) and tries again; a success resets the wait.
A database error (restart, lost connection) is expected and logged as a warning; anything
else is a bug, logged as an error with its traceback, and the loop still goes on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from mailq.db.connection import DATABASE_ERRORS

DB_RETRY_MIN_S = 0.2
DB_RETRY_MAX_S = 5.0


class Backoff:
    """One loop's retry pace. `failed()` logs and says how long to wait; `succeeded()` resets.

    `doing` starts the log line, e.g. "claiming failed; retrying" gives
    "claiming failed; retrying in 0.4s: <error>".
    """

    def __init__(
        self,
        logger: logging.Logger,
        doing: str,
        action: str,
        *,
        min_s: float = DB_RETRY_MIN_S,
        max_s: float = DB_RETRY_MAX_S,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        self._logger = logger
        self._doing = doing
        self._extra = {"action": action, **(extra or {})}
        self._min_s = min_s
        self._max_s = max_s
        self.delay_s = min_s
        self.failures = 0  # in a row

    def succeeded(self) -> None:
        self.delay_s = self._min_s
        self.failures = 0

    def failed(self, exc: BaseException, doing: str | None = None) -> float:
        """Log `exc` and return the seconds to wait before trying again (longer next time)."""
        expected = isinstance(exc, DATABASE_ERRORS)
        delay = self.delay_s
        self._logger.log(
            logging.WARNING if expected else logging.ERROR,
            "%s in %.1fs: %s",
            doing or self._doing,
            delay,
            exc,
            exc_info=not expected,
            extra=self._extra,
        )
        self.failures += 1
        self.delay_s = min(self._max_s, delay * 2)
        return delay

    async def pause(
        self,
        exc: BaseException,
        doing: str | None = None,
        *,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        """`failed()`, then wait (with `sleep`, which may return early when woken)."""
        await sleep(self.failed(exc, doing))
