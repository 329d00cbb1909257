"""The suppression list: addresses mailq never sends to.

An address is added by an operator (`suppress`, `import_suppressions`), by its owner
(one-click unsubscribe, `unsubscribe()` below) or by itself when a server answers a permanent
"no such user". Suppressing an address cancels its emails that have not gone out yet
(waiting or unknown, campaigns included) with the reason; an email queued later to a
suppressed address is cancelled by the worker that claims it, never sent. Addresses are
compared without case and stored lower-case.

Every function takes an asyncpg connection or pool (`conn`); on a connection inside a
transaction the change commits with the caller's.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from mailq.compose.unsubscribe import read_token
from mailq.db.connection import transaction
from mailq.db.emails import email_cancel_by_address
from mailq.db.suppressions import (
    suppression_add,
    suppression_find,
    suppression_list,
    suppression_remove,
)
from mailq.errors import InvalidEmail
from mailq.streams import each
from mailq.validation import check_address

IMPORT_CHUNK = 10_000
LIST_LIMIT_MAX = 10_000
REASON_MAX_CHARS = 500
ONE_CLICK_REASON = "unsubscribed (one-click link)"


@dataclass(frozen=True, slots=True)
class Suppression:
    address: str
    reason: str
    created_at: datetime
    # When it ends (a soft-bounce suppression); None: never.
    expires_at: datetime | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Suppression:
        return cls(row["address"], row["reason"], row["created_at"], row.get("expires_at"))


@dataclass(frozen=True, slots=True)
class SuppressResult:
    added: int  # addresses that were not on the list before
    cancelled: int  # emails to them that had not gone out and are now cancelled


def normalise(address: str, field: str = "address") -> str:
    """The stored form of an address (checked, lower-case); InvalidEmail otherwise."""
    return check_address(field, address.strip() if isinstance(address, str) else address).lower()


def _reason(reason: str) -> str:
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidEmail("reason: required")
    if any(ord(c) < 32 and c != "\t" for c in reason):
        raise InvalidEmail("reason: control characters are not allowed")
    return reason.strip()[:REASON_MAX_CHARS]


async def suppress(
    conn: asyncpg.Connection | asyncpg.Pool, addresses: Sequence[str], reason: str
) -> SuppressResult:
    """Put addresses on the suppression list and cancel their emails that have not gone out.

    InvalidEmail (naming `addresses[i]`) when one is not an address; nothing is written."""
    if isinstance(addresses, str):
        raise InvalidEmail("addresses: must be a list of addresses")
    why = _reason(reason)
    stored = sorted({normalise(a, f"addresses[{i}]") for i, a in enumerate(addresses)})
    async with transaction(conn) as tx:
        added = await suppression_add(tx, stored, [why] * len(stored))
        cancelled = await email_cancel_by_address(tx, stored, f"suppressed: {why}")
    return SuppressResult(added, cancelled)


async def unsubscribe(
    conn: asyncpg.Connection | asyncpg.Pool,
    secret: bytes,
    token: str,
    reason: str = ONE_CLICK_REASON,
) -> tuple[str, SuppressResult]:
    """Honour an unsubscribe token: check its signature, suppress its address (cancelling
    what was waiting for it). Returns the address; InvalidToken for a bad token. Calling it
    again with the same token is harmless (`added` is then 0)."""
    address = read_token(secret, token)
    return address, await suppress(conn, [address], reason)


async def unsuppress(conn: asyncpg.Connection | asyncpg.Pool, addresses: Sequence[str]) -> int:
    """Take addresses off the list (emails cancelled meanwhile stay cancelled); returns how
    many were on it."""
    if isinstance(addresses, str):
        raise InvalidEmail("addresses: must be a list of addresses")
    stored = sorted({normalise(a, f"addresses[{i}]") for i, a in enumerate(addresses)})
    return len(await suppression_remove(conn, stored))


async def list_suppressions(
    conn: asyncpg.Connection | asyncpg.Pool, *, after: str | None = None, limit: int = 1000
) -> list[Suppression]:
    """Suppressed addresses in address order; pass the last address as `after` for the
    next page."""
    if not 1 <= limit <= LIST_LIMIT_MAX:
        raise InvalidEmail(f"limit: must be from 1 to {LIST_LIMIT_MAX}")
    rows = await suppression_list(conn, after.lower() if after else None, limit)
    return [Suppression.from_row(r) for r in rows]


async def find_suppressions(
    conn: asyncpg.Connection | asyncpg.Pool, addresses: Sequence[str]
) -> dict[str, Suppression]:
    """The suppressed ones among `addresses`, by lower-case address."""
    rows = await suppression_find(conn, sorted({a.lower() for a in addresses}))
    return {r["address"]: Suppression.from_row(r) for r in rows}


async def import_suppressions(
    conn: asyncpg.Connection,
    entries: Iterable[str | tuple[str, str]] | AsyncIterable[str | tuple[str, str]],
    reason: str = "imported",
) -> SuppressResult:
    """Import many addresses (an iterator of addresses or (address, reason) pairs, e.g. a
    provider's bounce export), in chunks, in one transaction: all or nothing."""
    default = _reason(reason)
    added = cancelled = 0
    chunk: dict[str, str] = {}
    number = 0

    async def flush() -> None:
        nonlocal added, cancelled
        addresses = sorted(chunk)
        added += await suppression_add(conn, addresses, [chunk[a] for a in addresses])
        cancelled += await email_cancel_by_address(conn, addresses, f"suppressed: {default}")
        chunk.clear()

    async with conn.transaction():
        async for entry in each(entries):
            address, why = (entry, default) if isinstance(entry, str) else entry
            chunk.setdefault(normalise(address, f"entries[{number}]"), _reason(why))
            number += 1
            if len(chunk) >= IMPORT_CHUNK:
                await flush()
        if chunk:
            await flush()
    return SuppressResult(added, cancelled)
