"""NOTIFY is a wake-up hint: one per statement, carrying when the earliest new email is due."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg

from mailq import enqueue
from tests.support.emails import campaign, welcome


async def listen(database_url: str) -> tuple[asyncpg.Connection, asyncio.Queue[str]]:
    listener = await asyncpg.connect(database_url)
    payloads: asyncio.Queue[str] = asyncio.Queue()
    await listener.add_listener("mailq_emails", lambda *args: payloads.put_nowait(args[-1]))
    return listener, payloads


async def drain(payloads: asyncio.Queue[str], conn: asyncpg.Connection) -> list[str]:
    # A round trip on another connection after the commit: notifications sent at that
    # commit have been delivered by the time a later query of the listener returns.
    await conn.execute("SELECT 1")
    seen = []
    while True:
        try:
            seen.append(await asyncio.wait_for(payloads.get(), timeout=1.0))
        except TimeoutError:
            return seen


async def test_a_bulk_insert_of_100000_sends_one_notification(
    database_url: str, conn: asyncpg.Connection
) -> None:
    listener, payloads = await listen(database_url)
    try:
        await enqueue(conn, *[campaign(i) for i in range(100_000)])
        seen = await drain(payloads, listener)
    finally:
        await listener.close()
    assert await conn.fetchval("SELECT count(*) FROM mailq.emails") == 100_000
    assert len(seen) == 1
    assert float(seen[0]) <= 0.0, "due now"


async def test_a_scheduled_email_tells_workers_when_it_is_due(
    database_url: str, conn: asyncpg.Connection
) -> None:
    listener, payloads = await listen(database_url)
    try:
        await enqueue(conn, welcome(1, send_at=datetime.now(UTC) + timedelta(seconds=120)))
        seen = await drain(payloads, listener)
    finally:
        await listener.close()
    assert len(seen) == 1
    assert 100 < float(seen[0]) <= 121
