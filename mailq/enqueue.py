"""Enqueue: the Python API of SPEC.md, on asyncpg (async apps) or psycopg (sync web apps).

Both run inside the caller's transaction when one is open, so an email is queued exactly when
the caller's own change commits. Invalid input raises InvalidEmail before anything is written.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
import psycopg

from mailq.compose.templates import DEFAULT_TEMPLATES, TemplateStore
from mailq.db.emails import email_insert, email_insert_sync
from mailq.kinds import BUILTIN_KINDS, KindPolicy
from mailq.models import Email, EmailRow
from mailq.settings import DEFAULT_FROM
from mailq.validation import to_row


def build_rows(
    emails: Iterable[Email],
    *,
    default_from: str = DEFAULT_FROM,
    kinds: Mapping[str, KindPolicy] = BUILTIN_KINDS,
    templates: TemplateStore = DEFAULT_TEMPLATES,
) -> list[EmailRow]:
    """Validate every email first, so that one bad email writes nothing at all."""
    now = datetime.now(UTC)
    rows = []
    for index, email in enumerate(emails):
        if not isinstance(email, Email):
            raise TypeError(f"emails[{index}] is a {type(email).__name__}, not a mailq.Email")
        rows.append(
            to_row(email, default_from=default_from, kinds=kinds, now=now, templates=templates)
        )
    return rows


async def enqueue(
    conn: asyncpg.Connection | asyncpg.Pool,
    *emails: Email,
    default_from: str = DEFAULT_FROM,
    kinds: Mapping[str, KindPolicy] = BUILTIN_KINDS,
    templates: TemplateStore = DEFAULT_TEMPLATES,
) -> list[int]:
    """Queue emails; returns their ids in order. On a connection inside a transaction the
    emails commit (and wake workers) with it. `kinds` and `templates` come from MAILQ_CONFIG
    (mailq.config.Config) when it declares any."""
    rows = build_rows(emails, default_from=default_from, kinds=kinds, templates=templates)
    return await enqueue_rows(conn, rows)


async def enqueue_rows(
    conn: asyncpg.Connection | asyncpg.Pool, rows: Sequence[EmailRow]
) -> list[int]:
    if not rows:
        return []
    if isinstance(conn, asyncpg.Pool):
        async with conn.acquire() as acquired:
            return await email_insert(acquired, rows)
    return await email_insert(conn, rows)


def enqueue_sync(
    conn: psycopg.Connection[Any],
    *emails: Email,
    default_from: str = DEFAULT_FROM,
    kinds: Mapping[str, KindPolicy] = BUILTIN_KINDS,
    templates: TemplateStore = DEFAULT_TEMPLATES,
) -> list[int]:
    """`enqueue` on a psycopg 3 connection. Inside the caller's open transaction when there is
    one (the caller commits); otherwise in a transaction of its own, committed on return."""
    rows = build_rows(emails, default_from=default_from, kinds=kinds, templates=templates)
    return email_insert_sync(conn, rows)
