"""The only caller of sql/waiting_later_counts.sql: forgetting the counts of due-time slots
that have begun (the count triggers write them; mailq.queue_stats reads those still ahead)."""

from __future__ import annotations

from datetime import datetime

from mailq.db.connection import Executor
from mailq.db.queries import QUERIES


async def email_waiting_later_forget(db: Executor, now: datetime | None = None) -> int:
    return int(await db.fetchval(QUERIES["email_waiting_later_forget"], now))
