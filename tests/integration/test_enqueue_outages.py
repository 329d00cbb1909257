"""Enqueue while connections are cut: only mailq errors reach the caller, and a pool never
hands a broken connection out again."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter

import asyncpg
import psycopg
import pytest

from mailq import enqueue, enqueue_sync
from mailq.errors import DatabaseUnavailable, SchemaMismatch
from tests.support import postgres
from tests.support.emails import welcome

CUT_FOR_S = 2.0
CUT_EVERY_S = 0.03


async def test_on_a_pool_under_repeated_terminations_only_database_unavailable(
    database_url: str, pg_admin_url: str, database_name: str, conn: asyncpg.Connection
) -> None:
    pool = await asyncpg.create_pool(database_url, min_size=2, max_size=4)
    assert pool is not None
    seen: Counter[str] = Counter()
    stop = asyncio.Event()

    async def cutter() -> None:
        admin = await asyncpg.connect(pg_admin_url)
        try:
            while not stop.is_set():
                await admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = $1 AND pid <> $2",
                    database_name,
                    conn.get_server_pid(),
                )
                await asyncio.sleep(CUT_EVERY_S)
        finally:
            await admin.close()

    async def one(n: int) -> None:
        try:
            await enqueue(pool, welcome(n))
            seen["queued"] += 1
        except Exception as exc:
            seen[type(exc).__name__] += 1

    cutting = asyncio.create_task(cutter())
    loop = asyncio.get_running_loop()
    ends = loop.time() + CUT_FOR_S
    n = 0
    try:
        while loop.time() < ends:
            await asyncio.gather(*(one(n + i) for i in range(4)))
            n += 4
    finally:
        stop.set()
        await cutting
    assert seen["DatabaseUnavailable"] > 0, f"no connection was cut: {seen}"
    assert set(seen) <= {"queued", "DatabaseUnavailable"}, seen
    # Once the cuts stop, every connection the pool hands out works.
    for i in range(20):
        await enqueue(pool, welcome(100_000 + i))
    await pool.close()
    stored = await conn.fetchval("SELECT count(*) FROM mailq.emails")
    assert stored >= seen["queued"] + 20


async def test_on_a_connection_that_was_cut(
    database_url: str, pg_admin_url: str, database_name: str
) -> None:
    lost = await asyncpg.connect(database_url)
    postgres.terminate_backends(pg_admin_url, database_name)
    with pytest.raises(DatabaseUnavailable, match="cannot reach"):
        await enqueue(lost, welcome(1))
    lost.terminate()


async def test_sync_on_a_connection_that_was_cut(
    database_url: str, pg_admin_url: str, database_name: str
) -> None:
    def put() -> None:
        with psycopg.connect(database_url, autocommit=True) as sync:
            postgres.terminate_backends(pg_admin_url, database_name)
            enqueue_sync(sync, welcome(1))

    with pytest.raises(DatabaseUnavailable, match="cannot reach"):
        await asyncio.to_thread(put)


async def test_a_database_without_the_schema(pg_admin_url: str) -> None:
    name = f"mailq_e_{uuid.uuid4().hex[:16]}"
    url = postgres.create_database(pg_admin_url, name)
    try:
        bare = await asyncpg.connect(url)
        try:
            with pytest.raises(SchemaMismatch, match="mailq migrate"):
                await enqueue(bare, welcome(1))
        finally:
            await bare.close()
    finally:
        postgres.drop_database(pg_admin_url, name)
