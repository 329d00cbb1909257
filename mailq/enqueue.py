"""Enqueue: the Python API of SPEC.md, on asyncpg (async apps) or psycopg (sync web apps).

Both run inside the caller's transaction when one is open, so an email is queued exactly when
the caller's own change commits. Invalid input raises InvalidEmail before anything is written.

The default From, the kinds and the templates are the process's configuration (MAILQ_FROM,
MAILQ_CONFIG; read once, on first use) unless the caller passes its own: the same settings the
CLI and the HTTP service apply.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
import psycopg

from mailq.batches import iter_rows, rows_of
from mailq.compose.templates import TemplateStore
from mailq.db.connection import DATABASE_ERRORS, driver_errors
from mailq.db.emails import COPY_THRESHOLD, email_insert, email_insert_streamed, email_insert_sync
from mailq.kinds import KindPolicy
from mailq.models import Email, EmailRow


def configured(
    default_from: str | None,
    kinds: Mapping[str, KindPolicy] | None,
    templates: TemplateStore | None,
) -> tuple[str, Mapping[str, KindPolicy], TemplateStore]:
    """What the caller gave, the rest from the process's configuration (MAILQ_FROM and
    MAILQ_CONFIG, read once: mailq.config.from_environment)."""
    if default_from is not None and kinds is not None and templates is not None:
        return default_from, kinds, templates
    from mailq.config import from_environment

    settings, config = from_environment()
    return (
        settings.from_address if default_from is None else default_from,
        config.kinds if kinds is None else kinds,
        config.templates if templates is None else templates,
    )


def build_rows(
    emails: Iterable[Email],
    *,
    default_from: str | None = None,
    kinds: Mapping[str, KindPolicy] | None = None,
    templates: TemplateStore | None = None,
) -> list[EmailRow]:
    """Validate every email first, so that one bad email writes nothing at all (what the
    emails share is checked once per batch: mailq.batches)."""
    default_from, kinds, templates = configured(default_from, kinds, templates)
    return rows_of(
        emails, default_from=default_from, kinds=kinds, templates=templates, now=datetime.now(UTC)
    )


async def enqueue(
    conn: asyncpg.Connection | asyncpg.Pool,
    *emails: Email,
    default_from: str | None = None,
    kinds: Mapping[str, KindPolicy] | None = None,
    templates: TemplateStore | None = None,
) -> list[int]:
    """Queue emails; returns their ids in order. On a connection inside a transaction the
    emails commit (and wake workers) with it. `default_from`, `kinds` and `templates` not
    given come from MAILQ_FROM and MAILQ_CONFIG (read once per process, on first use).

    A bulk enqueue (COPY_THRESHOLD emails or more) checks each email while the ones before
    it are written by COPY; a refusal rolls all of them back (email_insert_streamed)."""
    if len(emails) < COPY_THRESHOLD:
        rows = build_rows(emails, default_from=default_from, kinds=kinds, templates=templates)
        return await enqueue_rows(conn, rows)
    default_from, kinds, templates = configured(default_from, kinds, templates)
    now = datetime.now(UTC)

    async def insert(connection: asyncpg.Connection) -> list[int]:
        rows = iter_rows(
            emails, default_from=default_from, kinds=kinds, templates=templates, now=now
        )
        return await email_insert_streamed(connection, len(emails), rows)

    with driver_errors():
        if isinstance(conn, asyncpg.Pool):
            return await _insert_on_pool(conn, insert)
        return await insert(conn)


async def enqueue_rows(
    conn: asyncpg.Connection | asyncpg.Pool, rows: Sequence[EmailRow]
) -> list[int]:
    """Insert rows already checked. Raises only mailq errors: DatabaseUnavailable when the
    connection is lost or the database cannot be reached (nothing was queued, or, if the
    connection broke after the commit, the emails were: see the README's Guarantees)."""
    if not rows:
        return []
    with driver_errors():
        if isinstance(conn, asyncpg.Pool):
            return await _insert_on_pool(conn, lambda acquired: email_insert(acquired, rows))
        return await email_insert(conn, rows)


async def _insert_on_pool(
    pool: asyncpg.Pool, insert: Callable[[asyncpg.Connection], Awaitable[list[int]]]
) -> list[int]:
    """On a connection of the pool; a connection found broken is terminated (the pool then
    replaces it), never handed back for reuse. One that broke while it waited in the pool
    (asyncpg: InternalClientError, raised before anything is sent) is replaced and the
    insert tried once more on a fresh one."""
    for tries_left in (1, 0):
        async with pool.acquire() as acquired:
            try:
                return await insert(acquired)
            except asyncpg.InternalClientError:
                _discard(acquired)
                if not tries_left:
                    raise
            except _BREAKING:
                _discard(acquired)
                raise
    raise AssertionError("unreachable")  # pragma: no cover


# What leaves a connection in a state not to reuse: a lost connection, or a cancellation in
# the middle of a statement.
_BREAKING: tuple[type[BaseException], ...] = (*DATABASE_ERRORS, asyncio.CancelledError)


def _discard(connection: Any) -> None:
    """Terminate a connection of the pool so that it is replaced; one that asyncpg already
    took back (it was closed under the operation) needs nothing more."""
    with contextlib.suppress(asyncpg.InterfaceError):
        connection.terminate()


def enqueue_sync(
    conn: psycopg.Connection[Any],
    *emails: Email,
    default_from: str | None = None,
    kinds: Mapping[str, KindPolicy] | None = None,
    templates: TemplateStore | None = None,
) -> list[int]:
    """`enqueue` on a psycopg 3 connection. Inside the caller's open transaction when there is
    one (the caller commits); otherwise in a transaction of its own, committed on return."""
    rows = build_rows(emails, default_from=default_from, kinds=kinds, templates=templates)
    with driver_errors():
        return email_insert_sync(conn, rows)
