"""Writing a campaign's checked recipients, a chunk at a time, one chunk in flight while the
next is built (mailq.campaigns.recipients checks them)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

from mailq.addresses import message_id_hexes, new_message_id
from mailq.db import campaigns as db


@dataclass(slots=True)
class _Chunk:
    """Recipients checked and waiting to be written: already encoded for COPY as waiting
    emails (`rows`), and as bare addresses, Message-IDs, display names, contents and
    lower-case addresses (keys) for when some turn out suppressed or already there; the keys
    that may be in the campaign already (`candidates`), and the recipients whose address is
    not ASCII (`others`)."""

    rows: db.RecipientRows
    hexes: str
    addresses: list[str] = field(default_factory=list)
    message_ids: list[str] = field(default_factory=list)
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
        self.chunk = self._new_chunk()
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
        at = 32 * len(chunk.keys)
        message_id = f"<{chunk.hexes[at : at + 32]}@{self.domain}>"
        chunk.rows.add(address, message_id, content, name)
        chunk.addresses.append(address)
        chunk.message_ids.append(message_id)
        chunk.names.append(name)
        chunk.contents.append(content)
        chunk.keys.append(key)
        return len(chunk.keys) >= self.size

    def _new_chunk(self) -> _Chunk:
        hexes = message_id_hexes(self.size)
        return _Chunk(self._new_rows(), hexes, look_up_all=self.look_up_all)

    def _new_rows(self) -> db.RecipientRows:
        row = self.row
        return db.RecipientRows(
            kind=row["kind"],
            priority=row["priority"],
            run_at=self.run_at,
            send_at=row["send_at"],
            max_attempts=row["max_attempts"],
            campaign_id=row["id"],
            expires_at=row.get("expires_at"),
        )

    async def flush(self) -> None:
        """Start writing the chunk built so far (after the one before it is written)."""
        await self.settle()
        if len(self.chunk):
            self.writing = asyncio.create_task(self._write(self.chunk))
            self.chunk = self._new_chunk()
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
            # Most chunks go as they were encoded; one with a suppressed or present key again.
            redo = held.suppressed or held.present
            data = self._rows(chunk, held) if redo else chunk.rows.end()
            await db.email_copy_recipients(self.conn, data)
            added = len(chunk.keys) - len(held.present)
            suppressed = len(held.suppressed.keys() - held.present)
        if chunk.others:
            addresses = [address for address, _, _ in chunk.others]
            more, held_back = await db.email_insert_recipients(
                self.conn,
                row["id"],
                addresses,
                [new_message_id(self.domain) for _ in addresses],
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

    def _rows(self, chunk: _Chunk, held: db.Held) -> bytearray:
        """The chunk's rows encoded again, without those already in the campaign; suppressed
        ones cancelled with the reason."""
        rows, suppressed, present = self._new_rows(), held.suppressed, held.present
        columns = zip(
            chunk.addresses, chunk.message_ids, chunk.names, chunk.contents, chunk.keys, strict=True
        )
        for address, message_id, name, content, key in columns:
            if key in present:
                continue
            reason = suppressed.get(key)
            if reason is None:
                rows.add(address, message_id, content, name)
            else:
                assert held.now is not None  # a suppression was found, with the time
                rows.add(address, message_id, content, name, (held.now, f"suppressed: {reason}"))
        return rows.end()
