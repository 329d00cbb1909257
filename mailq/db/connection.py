"""What every statement module shares: the Executor protocol, transactions on a pool or
connection, the pool reset, the duty locks, and the one translation of a lost connection
into DatabaseUnavailable."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Protocol

import asyncpg

from mailq.db.queries import QUERIES
from mailq.errors import DatabaseUnavailable


class Executor(Protocol):
    """What the repository needs of an asyncpg pool or connection."""

    async def fetch(self, query: str, *args: Any) -> list[Any]: ...

    async def fetchrow(self, query: str, *args: Any) -> Any: ...

    async def fetchval(self, query: str, *args: Any) -> Any: ...

    async def execute(self, query: str, *args: Any) -> str: ...


# Keys of the transaction-scoped advisory locks that make a duty run on one worker at a time.
RESCUE_LOCK_KEY = 0x6D61_696C_7101


PRUNE_LOCK_KEY = 0x6D61_696C_7102


IDEMPOTENCY_PRUNE_LOCK_KEY = 0x6D61_696C_7104


@asynccontextmanager
async def transaction(conn: asyncpg.Connection | asyncpg.Pool) -> AsyncIterator[Any]:
    """A transaction on `conn`, or on one connection taken from it when it is a pool."""
    if isinstance(conn, asyncpg.Pool):
        async with conn.acquire() as held, held.transaction():
            yield held
    else:
        async with conn.transaction():
            yield conn


async def keep_session(conn: asyncpg.Connection) -> None:
    """Pool `reset` for mailq's own pools: hand a connection back without a round trip.

    asyncpg's default reset sends `SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *;
    RESET ALL` on every release, and Pool.fetch returns only once it is answered: one more
    round trip per claim and per batch of outcomes. mailq's statements change no session
    state (no SET, LISTEN, cursors or session advisory locks: duties take transaction-scoped
    locks), so there is nothing to reset. asyncpg still rolls back a transaction left open
    before calling this.
    """


async def schema_try_duty_lock(conn: asyncpg.Connection, key: int) -> bool:
    """Inside a transaction: take a duty's advisory lock, False when another worker has it."""
    return bool(await conn.fetchval(QUERIES["schema_try_duty_lock"], key))


def connection_error(exc: BaseException) -> DatabaseUnavailable:
    return DatabaseUnavailable(f"the queue's database is unreachable: {exc}")
