"""Enqueue: the Python API of SPEC.md, on asyncpg (async apps) or psycopg (sync web apps).

Both run inside the caller's transaction when one is open, so an email is queued exactly when
the caller's own change commits. Invalid input raises InvalidEmail before anything is written.

The default From, the kinds and the templates are the process's configuration (MAILQ_FROM,
MAILQ_CONFIG; read once, on first use) unless the caller passes its own: the same settings the
CLI and the HTTP service apply.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
import psycopg

from mailq.compose.templates import TemplateStore
from mailq.db.emails import email_insert, email_insert_sync
from mailq.kinds import KindPolicy
from mailq.models import Email, EmailRow
from mailq.validation import to_row


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
    """Validate every email first, so that one bad email writes nothing at all."""
    default_from, kinds, templates = configured(default_from, kinds, templates)
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
    default_from: str | None = None,
    kinds: Mapping[str, KindPolicy] | None = None,
    templates: TemplateStore | None = None,
) -> list[int]:
    """Queue emails; returns their ids in order. On a connection inside a transaction the
    emails commit (and wake workers) with it. `default_from`, `kinds` and `templates` not
    given come from MAILQ_FROM and MAILQ_CONFIG (read once per process, on first use)."""
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
    default_from: str | None = None,
    kinds: Mapping[str, KindPolicy] | None = None,
    templates: TemplateStore | None = None,
) -> list[int]:
    """`enqueue` on a psycopg 3 connection. Inside the caller's open transaction when there is
    one (the caller commits); otherwise in a transaction of its own, committed on return."""
    rows = build_rows(emails, default_from=default_from, kinds=kinds, templates=templates)
    return email_insert_sync(conn, rows)
