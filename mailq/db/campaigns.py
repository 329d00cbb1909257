"""The only caller of the campaign statements (mailq/sql/campaigns.sql and the campaign
blocks of emails.sql): one function per named statement, same name."""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
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


async def email_copy_recipients(conn: asyncpg.Connection, data: bytes | bytearray) -> None:
    """COPY rows of RECIPIENT_COLUMNS, in binary (RecipientRows), into mailq.emails in the
    caller's transaction."""
    await conn.copy_to_table(
        "emails", schema_name="mailq", columns=RECIPIENT_COLUMNS, source=data, format="binary"
    )


# COPY's binary format (the PostgreSQL manual, "COPY", Binary Format): a header, then per row
# the number of fields (int16) and each field's length (int32, -1 for null) and value in the
# type's binary form; -1 (int16) ends the data.
_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
_TRAILER = struct.pack(">h", -1)
_NULL = struct.pack(">i", -1)
_LENGTH = struct.Struct(">i").pack
_POSTGRES_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _text(value: str | None) -> bytes:
    if value is None:
        return _NULL
    data = value.encode()
    return _LENGTH(len(data)) + data


def _timestamptz(value: datetime | None) -> bytes:
    if value is None:
        return _NULL
    return struct.pack(">iq", 8, (value - _POSTGRES_EPOCH) // _MICROSECOND)


class RecipientRows:
    """A chunk of one campaign's rows in COPY's binary format, RECIPIENT_COLUMNS in order:
    what all rows share is encoded once, each row adds its address, Message-ID, content
    (jsonb: version 1, then the text), state and display name."""

    def __init__(
        self,
        *,
        kind: str,
        priority: int,
        run_at: datetime,
        send_at: datetime,
        max_attempts: int | None,
        campaign_id: int,
        expires_at: datetime | None,
    ) -> None:
        attempts = _NULL if max_attempts is None else struct.pack(">ii", 4, max_attempts)
        self._first = b"".join(
            (
                struct.pack(">h", len(RECIPIENT_COLUMNS)),
                _text(kind),
                struct.pack(">ih", 2, priority),
                _timestamptz(run_at),
                _timestamptz(send_at),
                attempts,
            )
        )
        self._campaign = struct.pack(">iq", 8, campaign_id)
        self._waiting = _text("waiting") + _NULL + _NULL
        self._last = _timestamptz(expires_at)
        self.data = bytearray(_HEADER)
        self.rows = 0

    def add(
        self,
        address: str,
        message_id: str,
        content: str,
        name: str | None,
        cancelled: tuple[datetime, str] | None = None,
    ) -> None:
        """One row; `cancelled`: (finished_at, last_error) of a suppressed recipient."""
        body = content.encode()
        state = (
            self._waiting
            if cancelled is None
            else _text("cancelled") + _timestamptz(cancelled[0]) + _text(cancelled[1])
        )
        self.data += b"".join(
            (
                self._first,
                _text(address),
                _text(message_id),
                _LENGTH(len(body) + 1),
                b"\x01",
                body,
                self._campaign,
                state,
                _text(name),
                self._last,
            )
        )
        self.rows += 1

    def end(self) -> bytearray:
        self.data += _TRAILER
        return self.data


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
