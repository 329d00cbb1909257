"""The only caller of the campaign statements (mailq/sql/campaigns.sql and the campaign
blocks of emails.sql): one function per named statement, same name."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from mailq.db.connection import Executor
from mailq.db.emails import copy_columns
from mailq.db.queries import QUERIES

# The columns of a campaign recipient's row, in the order email_copy_recipients writes them.
RECIPIENT_COLUMNS = copy_columns(QUERIES["email_copy_recipients"])


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


async def email_insert_recipients(
    conn: asyncpg.Connection,
    campaign_id: int,
    addresses: Sequence[str],
    message_ids: Sequence[str],
    contents: Sequence[str],
    *,
    kind: str,
    priority: int,
    max_attempts: int | None,
    run_at: datetime,
    send_at: datetime,
    names: Sequence[str | None] | None = None,
    expires_at: datetime | None = None,
) -> tuple[int, int]:
    """Insert one chunk; returns (inserted, of which suppressed). Duplicates are skipped.
    `names`: the recipients' display names (None where none was given)."""
    row = await conn.fetchrow(
        QUERIES["email_insert_recipients"],
        campaign_id,
        addresses,
        message_ids,
        contents,
        kind,
        priority,
        max_attempts,
        run_at,
        send_at,
        # No names at all (the common case): a null array, which unnest pads with nulls.
        None if names is None or not any(names) else list(names),
        expires_at,
    )
    return int(row["added"]), int(row["suppressed"])


async def email_recipients_setup(conn: asyncpg.Connection, campaign_id: int) -> tuple[bool, bool]:
    """(lower() folds ASCII as str.lower does, the campaign has emails already)."""
    row = await conn.fetchrow(QUERIES["email_recipients_setup"], campaign_id)
    return bool(row["ascii_lower"]), bool(row["has_emails"])


@dataclass(frozen=True, slots=True)
class Held:
    """What keeps recipients of a chunk from being inserted as waiting emails."""

    suppressed: Mapping[str, str]  # lower-case address -> the suppression's reason
    present: frozenset[str]  # lower-case addresses already in the campaign
    now: datetime | None  # the transaction's now() (None when nothing is held)


async def email_recipients_held(
    conn: asyncpg.Connection, campaign_id: int, keys: Sequence[str], candidates: Sequence[str]
) -> Held:
    """Of the lower-case addresses `keys`, the suppressed ones; of `candidates`, those already
    in the campaign."""
    rows = await conn.fetch(
        QUERIES["email_recipients_held"], campaign_id, list(keys), list(candidates)
    )
    return Held(
        suppressed={r["key"]: r["reason"] for r in rows if not r["present"]},
        present=frozenset(r["key"] for r in rows if r["present"]),
        now=rows[0]["now"] if rows else None,
    )


async def email_copy_recipients(conn: asyncpg.Connection, records: Iterable[Sequence[Any]]) -> None:
    """COPY rows of RECIPIENT_COLUMNS into mailq.emails (in the caller's transaction)."""
    await conn.copy_records_to_table(
        "emails", schema_name="mailq", columns=RECIPIENT_COLUMNS, records=records
    )


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
