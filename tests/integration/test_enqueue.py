"""Enqueue on both drivers: ids back, inside the caller's transaction, nothing on bad input."""

from __future__ import annotations

import asyncio
import json

import asyncpg
import psycopg
import pytest

from mailq import InvalidEmail, enqueue, enqueue_sync
from tests.support.emails import campaign, welcome

pytestmark = pytest.mark.parametrize("driver", ["asyncpg", "psycopg"])


async def put(driver: str, database_url: str, *emails, transaction_ok: bool = True):  # type: ignore[no-untyped-def]
    if driver == "asyncpg":
        conn = await asyncpg.connect(database_url)
        try:
            return await enqueue(conn, *emails)
        finally:
            await conn.close()

    def sync() -> list[int]:
        with psycopg.connect(database_url, autocommit=True) as pconn:
            return enqueue_sync(pconn, *emails)

    return await asyncio.to_thread(sync)


async def test_ids_come_back_in_order_and_rows_hold_what_was_given(
    driver: str, database_url: str, conn: asyncpg.Connection
) -> None:
    ids = await put(driver, database_url, welcome(1), campaign(2, send_at=None))
    rows = await conn.fetch("SELECT * FROM mailq.emails ORDER BY id")
    assert [r["id"] for r in rows] == ids
    assert [r["to_address"] for r in rows] == ["user1@example.com", "user2@example.com"]
    assert [r["kind"] for r in rows] == ["welcome", "search_engine"]
    assert json.loads(rows[0]["content"])["context"] == {"name": "user 1"}
    assert len({r["message_id"] for r in rows}) == 2


async def test_bulk_goes_through_copy_and_keeps_order(
    driver: str, database_url: str, conn: asyncpg.Connection
) -> None:
    emails = [campaign(i) for i in range(3000)]
    ids = await put(driver, database_url, *emails)
    assert len(ids) == 3000 == len(set(ids))
    stored = await conn.fetch("SELECT id, to_address FROM mailq.emails ORDER BY id")
    assert [r["id"] for r in stored] == sorted(ids)
    assert {r["id"]: r["to_address"] for r in stored} == {
        i: f"user{n}@example.com" for n, i in enumerate(ids)
    }


async def test_one_invalid_email_writes_nothing(
    driver: str, database_url: str, conn: asyncpg.Connection
) -> None:
    with pytest.raises(InvalidEmail, match=r"^to:"):
        await put(driver, database_url, welcome(1), welcome(2, to="broken"))
    assert await conn.fetchval("SELECT count(*) FROM mailq.emails") == 0


async def test_enqueue_joins_the_callers_transaction(
    driver: str, database_url: str, conn: asyncpg.Connection
) -> None:
    if driver == "asyncpg":
        other = await asyncpg.connect(database_url)
        try:
            tx = other.transaction()
            await tx.start()
            await enqueue(other, welcome(1), *[campaign(i) for i in range(600)])
            await tx.rollback()
        finally:
            await other.close()
    else:

        def sync() -> None:
            with psycopg.connect(database_url) as pconn:  # not autocommit: a transaction opens
                pconn.execute("SELECT 1")
                enqueue_sync(pconn, welcome(1), *[campaign(i) for i in range(600)])
                pconn.rollback()

        await asyncio.to_thread(sync)
    assert await conn.fetchval("SELECT count(*) FROM mailq.emails") == 0
