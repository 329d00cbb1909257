"""How long a dashboard answer waited for the database: the time of each query (asyncpg's
query logger on the service's connections) summed over one page view, or one live update,
and reported beside the page's own time in its Server-Timing header (what the benchmark
reads). Outside a measured view the logger does nothing."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

import asyncpg

_SPENT: ContextVar[list[float] | None] = ContextVar("mailq_dashboard_db_s", default=None)


async def install(conn: asyncpg.Connection) -> None:
    """The pool's `init`: every connection reports its queries' times."""
    conn.add_query_logger(_logged)


def _logged(record: Any) -> None:
    # Called soon after the query, in a copy of the context of the task that ran it (and so
    # with that view's list, also from the tasks a page gathers).
    spent = _SPENT.get()
    if spent is not None:
        spent.append(float(record.elapsed))


@contextlib.contextmanager
def measuring() -> Iterator[list[float]]:
    """Collect the times of the queries run inside (read them after `settled()`)."""
    spent: list[float] = []
    token = _SPENT.set(spent)
    try:
        yield spent
    finally:
        _SPENT.reset(token)


async def settled(spent: list[float]) -> float:
    """Seconds of database time, once the loggers of the queries already answered ran."""
    await asyncio.sleep(0)
    return sum(spent)
