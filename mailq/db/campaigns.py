"""The only caller of the campaign statements (mailq/sql/campaigns.sql and the campaign
blocks of emails.sql): one function per named statement, same name."""

from __future__ import annotations

from collections.abc import AsyncIterable
from datetime import datetime
from typing import Any

import asyncpg

from mailq.db.connection import Executor
from mailq.db.queries import QUERIES


async def campaign_insert(
    conn: asyncpg.Connection,
    name: str,
    kind: str,
    send_at: datetime,
    priority: int,
    max_attempts: int | None,
    content: str,
    expires_at: datetime | None = None,
) -> dict[str, Any]:
    row = await conn.fetchrow(
        QUERIES["campaign_insert"], name, kind, send_at, priority, max_attempts, content, expires_at
    )
    return dict(row)


async def campaign_lock(conn: asyncpg.Connection, campaign_id: int) -> dict[str, Any] | None:
    """Inside a transaction: the campaign, locked; None when there is none."""
    row = await conn.fetchrow(QUERIES["campaign_lock"], campaign_id)
    return None if row is None else dict(row)


async def campaign_get(db: Executor, campaign_id: int) -> dict[str, Any] | None:
    row = await db.fetchrow(QUERIES["campaign_get"], campaign_id)
    return None if row is None else dict(row)


async def campaign_list(db: Executor, limit: int, before_id: int | None) -> list[dict[str, Any]]:
    return [dict(r) for r in await db.fetch(QUERIES["campaign_list"], limit, before_id)]


async def campaign_set_status(db: Executor, campaign_id: int, status: str) -> bool:
    return await db.fetchval(QUERIES["campaign_set_status"], campaign_id, status) is not None


async def campaign_progress(db: Executor, campaign_id: int) -> dict[str, int]:
    rows = await db.fetch(QUERIES["campaign_progress"], campaign_id)
    return {r["state"]: int(r["count"]) for r in rows}


async def campaign_progress_open(db: Executor, limit: int) -> list[dict[str, Any]]:
    return [dict(r) for r in await db.fetch(QUERIES["campaign_progress_open"], limit)]


# The staging table's columns, in the order of the records copied into it.
STAGED_RECIPIENT_COLUMNS = ("address", "message_id", "content", "name")


async def email_stage_recipients(
    conn: asyncpg.Connection,
    records: AsyncIterable[tuple[str, str, str, str | None]],
) -> None:
    """COPY recipients (address, Message-ID, content JSON, display name or None) into this
    transaction's staging table, as the records come (they may be built meanwhile)."""
    await conn.execute(QUERIES["email_stage_recipients"])
    await conn.execute(QUERIES["email_clear_staged_recipients"])
    await conn.copy_records_to_table(
        "mailq_staged_recipients", records=records, columns=STAGED_RECIPIENT_COLUMNS
    )


async def email_insert_staged_recipients(
    conn: asyncpg.Connection,
    campaign_id: int,
    *,
    kind: str,
    priority: int,
    max_attempts: int | None,
    run_at: datetime,
    send_at: datetime,
    expires_at: datetime | None = None,
) -> tuple[int, int]:
    """Move the staged recipients into the campaign; returns (inserted, of which
    suppressed). Duplicates (in the campaign, or twice in the input) are skipped."""
    row = await conn.fetchrow(
        QUERIES["email_insert_staged_recipients"],
        campaign_id,
        kind,
        priority,
        max_attempts,
        run_at,
        send_at,
        expires_at,
    )
    return int(row["added"]), int(row["suppressed"])


async def email_pause_campaign(conn: asyncpg.Connection, campaign_id: int) -> int:
    return _count(await conn.execute(QUERIES["email_pause_campaign"], campaign_id))


async def email_resume_campaign(
    conn: asyncpg.Connection, campaign_id: int, send_at: datetime
) -> int:
    return _count(await conn.execute(QUERIES["email_resume_campaign"], campaign_id, send_at, None))


async def email_cancel_campaign(conn: asyncpg.Connection, campaign_id: int, reason: str) -> int:
    return _count(await conn.execute(QUERIES["email_cancel_campaign"], campaign_id, reason, None))


def _count(status: str) -> int:
    """The row count of a command tag like 'UPDATE 42'."""
    return int(status.rsplit(" ", 1)[-1])
