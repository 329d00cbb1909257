"""Writing a campaign's checked recipients, a chunk at a time, one chunk in flight while the
next is built (mailq.campaigns.recipients checks them)."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

from mailq.db import campaigns as db


@dataclass(slots=True)
class _Chunk:
    """Recipients checked and waiting to be written: bare addresses, display names, contents
    and lower-case addresses (keys), the keys that may be in the campaign already
    (`candidates`), and the recipients whose address is not ASCII (`others`)."""

    addresses: list[str] = field(default_factory=list)
    names: list[str | None] = field(default_factory=list)
    contents: list[str] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    candidates: list[str] = field(default_factory=list)
    others: list[tuple[str, str | None, str]] = field(default_factory=list)
    look_up_all: bool = False

    def __len__(self) -> int:
        return len(self.keys) + len(self.others)


class ChunkWriter:
    """Writes a call's recipients chunk by chunk, one chunk in flight while the next is
    built. An ASCII address is de-duplicated by its lower-case key: against the chunk in
    Python, against the campaign in the database only when it may be there (`_filter`: one
    bit per hash of the keys this call wrote, so a clear bit means new). Suppressed keys
    are looked up per chunk; the chunk then goes in by COPY. Other addresses (lower() may
    fold them differently from Python) go through email_insert_recipients, which finds
    duplicates and suppressions itself; the chunks after one look up every key."""

    def __init__(
        self,
        conn: asyncpg.Connection,
        row: Mapping[str, Any],
        domain: str,
        *,
        run_at: datetime,
        by_copy: bool,
        look_up_all: bool,
        size: int,
        filter_bits: int,
    ) -> None:
        self.conn, self.row, self.domain, self.run_at = conn, row, domain, run_at
        self.by_copy, self.look_up_all, self.size = by_copy, look_up_all, size
        self._filter = bytearray(max(filter_bits // 8, 1))
        self._mask = max(filter_bits // 8, 1) * 8 - 1
        self.chunk = _Chunk(look_up_all=look_up_all)
        self.writing: asyncio.Task[tuple[int, int]] | None = None
        self.added = self.suppressed = 0

    def add(self, address: str, name: str | None, content: str) -> bool:
        """Add a checked recipient to the chunk; True when the chunk is full."""
        chunk = self.chunk
        if not (self.by_copy and address.isascii()):
            chunk.others.append((address, name, content))
            self.look_up_all = True
            return len(chunk) >= self.size
        key = address.lower()
        if key in chunk.seen:
            return False
        chunk.seen.add(key)
        bit = hash(key) & self._mask
        if self._filter[bit >> 3] & (1 << (bit & 7)):
            chunk.candidates.append(key)
        else:
            self._filter[bit >> 3] |= 1 << (bit & 7)
        chunk.addresses.append(address)
        chunk.names.append(name)
        chunk.contents.append(content)
        chunk.keys.append(key)
        return len(chunk.keys) >= self.size

    async def flush(self) -> None:
        """Start writing the chunk built so far (after the one before it is written)."""
        await self.settle()
        if len(self.chunk):
            self.writing = asyncio.create_task(self._write(self.chunk))
            self.chunk = _Chunk(look_up_all=self.look_up_all)
            await asyncio.sleep(0)  # its first statement goes out before the next is built

    async def settle(self) -> None:
        if self.writing is not None:
            task, self.writing = self.writing, None
            added, suppressed = await task
            self.added += added
            self.suppressed += suppressed

    async def abandon(self) -> None:
        """Refused while a chunk was being written: let it end (the caller rolls back)."""
        if self.writing is not None:
            with contextlib.suppress(Exception):
                await self.writing

    async def _write(self, chunk: _Chunk) -> tuple[int, int]:
        row, added, suppressed = self.row, 0, 0
        if chunk.keys:
            candidates = chunk.keys if chunk.look_up_all else chunk.candidates
            held = await db.email_recipients_held(self.conn, row["id"], chunk.keys, candidates)
            await db.email_copy_recipients(self.conn, self._records(chunk, held))
            added = len(chunk.keys) - len(held.present)
            suppressed = len(held.suppressed.keys() - held.present)
        if chunk.others:
            addresses = [address for address, _, _ in chunk.others]
            more, held_back = await db.email_insert_recipients(
                self.conn,
                row["id"],
                addresses,
                [f"<{os.urandom(16).hex()}@{self.domain}>" for _ in addresses],
                [content for _, _, content in chunk.others],
                kind=row["kind"],
                priority=row["priority"],
                max_attempts=row["max_attempts"],
                run_at=self.run_at,
                send_at=row["send_at"],
                names=[name for _, name, _ in chunk.others],
                expires_at=row.get("expires_at"),
            )
            added, suppressed = added + more, suppressed + held_back
        return added, suppressed

    def _records(self, chunk: _Chunk, held: db.Held) -> Iterator[tuple[Any, ...]]:
        """The chunk's rows in RECIPIENT_COLUMNS order, without those already in the campaign;
        suppressed ones cancelled with the reason."""
        row = self.row
        kind, priority, run_at = row["kind"], row["priority"], self.run_at
        send_at, max_attempts, campaign_id = row["send_at"], row["max_attempts"], row["id"]
        expires_at, domain = row.get("expires_at"), self.domain
        suppressed, present = held.suppressed, held.present
        hexes = os.urandom(16 * len(chunk.keys)).hex()
        rows = zip(chunk.addresses, chunk.names, chunk.contents, chunk.keys, strict=True)
        for i, (address, name, content, key) in enumerate(rows):
            if present and key in present:
                continue
            message_id = f"<{hexes[32 * i : 32 * i + 32]}@{domain}>"
            reason = suppressed.get(key) if suppressed else None
            status, finished_at = ("waiting", None) if reason is None else ("cancelled", held.now)
            yield (
                kind,
                priority,
                run_at,
                send_at,
                max_attempts,
                address,
                message_id,
                content,
                campaign_id,
                status,
                finished_at,
                None if reason is None else f"suppressed: {reason}",
                name,
                expires_at,
            )
