"""What every statement module shares: the Executor protocol, transactions on a pool or
connection, the pool reset, the duty locks, and the one definition of "the database is
unavailable" (DATABASE_ERRORS) with its translation into DatabaseUnavailable."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any, Protocol

import asyncpg
import psycopg

from mailq.db.queries import QUERIES
from mailq.errors import DatabaseError, DatabaseUnavailable, MailqError, SchemaMismatch

# What a lost, restarting, overloaded or missing database raises through asyncpg or psycopg:
# the worker waits and tries again, the service answers 503, the CLI prints one line. Any other
# driver error (a constraint, a syntax error) is a bug in mailq and is reported as one.
DATABASE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,  # refused, reset, no route, DNS
    TimeoutError,
    asyncpg.InterfaceError,  # the connection is closed or was lost
    asyncpg.InternalClientError,  # a connection cut in the middle of an operation
    asyncpg.PostgresConnectionError,  # class 08: connection exceptions
    asyncpg.TransactionRollbackError,  # class 40: serialization failure, deadlock (try again)
    asyncpg.ReadOnlySQLTransactionError,  # 25006: connected to a standby after a failover
    asyncpg.InsufficientResourcesError,  # class 53: too many connections, disk full
    asyncpg.OperatorInterventionError,  # class 57: shutting down, starting up, statement timeout
    asyncpg.InvalidAuthorizationSpecificationError,  # class 28: wrong user or password
    asyncpg.InvalidCatalogNameError,  # 3D000: the database does not exist
    asyncpg.PostgresSystemError,  # class 58: the server's own I/O failed
    asyncpg.InvalidSchemaNameError,  # the schema is not there (never migrated)
    asyncpg.UndefinedTableError,
    psycopg.OperationalError,  # psycopg's (enqueue_sync, Alembic) for all of the above
    psycopg.InterfaceError,  # psycopg: the connection is closed
    DatabaseUnavailable,
)
# Of those, what means mailq's schema is not there (SchemaMismatch at the API's edge).
_NO_SCHEMA: tuple[type[BaseException], ...] = (
    asyncpg.UndefinedTableError,
    asyncpg.InvalidSchemaNameError,
    psycopg.errors.UndefinedTable,
    psycopg.errors.InvalidSchemaName,
)


def unavailable(exc: BaseException) -> DatabaseUnavailable:
    """The mailq error for one of DATABASE_ERRORS: one line with the driver's reason."""
    if isinstance(exc, DatabaseUnavailable):
        return exc
    text = " ".join(str(exc).split())[:300] or type(exc).__name__
    return DatabaseUnavailable(f"cannot reach the queue's database: {text}")


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


async def open_pool(
    dsn: str,
    *,
    max_size: int,
    command_timeout: float,
    reset: Any = None,
    init: Any = None,
) -> asyncpg.Pool:
    """A pool of mailq's own, with no connection floor (min_size 0). With a floor, asyncpg
    reconnects in the background whenever a connection is lost and logs every failed try
    with a traceback ("Failed to restore the pool connection floor"), a dozen per database
    restart; without one, a connection is made when it is needed, and a failure reaches the
    loop that asked, which logs one warning line and retries. One connection is made at once
    (and kept while it is used), so an unreachable database fails here: DatabaseUnavailable."""
    options: dict[str, Any] = {"reset": reset} if reset is not None else {}
    if init is not None:
        options["init"] = init
    try:
        pool = await asyncpg.create_pool(
            dsn, min_size=0, max_size=max_size, command_timeout=command_timeout, **options
        )
        assert pool is not None
        try:
            async with pool.acquire():
                pass
        except BaseException:
            pool.terminate()
            raise
    except DATABASE_ERRORS as exc:
        raise unavailable(exc) from exc
    return pool


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


@contextmanager
def driver_errors() -> Iterator[None]:
    """Driver errors as mailq errors, at the edge of the Python API: DatabaseUnavailable for
    a lost or unreachable database (the caller may try again), SchemaMismatch for a database
    without mailq's schema, DatabaseError for any other refusal."""
    try:
        yield
    except MailqError:
        raise
    except _NO_SCHEMA as exc:
        raise SchemaMismatch(
            f"the database has no mailq schema, or an older one: run `mailq migrate` ({exc})"
        ) from exc
    except DATABASE_ERRORS as exc:
        raise unavailable(exc) from exc
    except (asyncpg.PostgresError, psycopg.Error) as exc:
        raise DatabaseError(f"the queue's database refused the statement: {exc}") from exc
