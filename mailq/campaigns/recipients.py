"""A campaign's recipients: checked one by one against the campaign's content, inserted in
bulk, chunk by chunk, from any iterator (a million recipients never sit in memory at once).

Each recipient becomes an email of the campaign's kind that stores only the recipient's
context. A recipient gets a campaign at most once (a unique index on the campaign and the
address, without case): adding them again is counted as a duplicate and ignored. A recipient
on the suppression list is stored `cancelled` with the reason.

A template's variables are checked per recipient without rendering anything: the set of
variables the content needs is computed once (Shape), and each recipient's context is checked
against it (a missing one refuses the whole call, naming the recipient and the variable).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import itertools
import json
import os
import re
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TextIO, TypeAlias

import asyncpg
import orjson

from mailq.addresses import AddressError, is_plain_address, message_id_domain, parse_mailbox
from mailq.compose.templates import PROVIDED_VARIABLES, variables_of
from mailq.db import campaigns as db
from mailq.errors import CampaignClosed, CampaignNotFound, InvalidEmail, quoted

# Recipients written per statement (a COPY): big enough to amortise the round trips, small
# enough that a chunk stays a few MB.
CHUNK = 10_000
# The size of the filter of the addresses a call wrote (2**24 bits: 2 MB; at 1,000,000
# addresses about 6% of new ones are looked up in the database for nothing).
_FILTER_BITS = 1 << 24
PAUSED_UNTIL = datetime(9999, 12, 31, tzinfo=UTC)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_JSON = json.JSONEncoder(separators=(",", ":"), allow_nan=False)


@dataclass(frozen=True, slots=True)
class Recipient:
    """One recipient: the address (bare, or a mailbox `Name <address>`) and the context its
    email is rendered with."""

    email: str
    context: Mapping[str, Any] = field(default_factory=dict)


# What takes recipients: `Recipient`s, `{"email": ..., "context": {...}}` mappings or plain
# addresses, from a plain or an async iterable.
_Item: TypeAlias = Recipient | Mapping[str, Any] | str
Recipients: TypeAlias = Iterable[_Item] | AsyncIterable[_Item]


@dataclass(frozen=True, slots=True)
class Added:
    """The outcome of adding recipients."""

    added: int  # emails created (suppressed ones included, stored cancelled)
    duplicates: int  # recipients already in the campaign (or twice in the input)
    suppressed: int = 0  # of `added`, recipients on the suppression list


@dataclass(frozen=True, slots=True)
class Shape:
    """What every recipient of a campaign is checked against, computed once."""

    needed: frozenset[str]  # variables the content uses that the shared context lacks
    subject_vars: frozenset[str]  # variables of the subject (no line breaks allowed)
    shared: Mapping[str, Any]
    domain: str

    @classmethod
    def of(cls, content: Mapping[str, Any]) -> Shape:
        used: set[str] = set()
        for part in ("subject", "text", "html"):
            if content.get(part):
                used |= variables_of(content[part])
        shared = content.get("context") or {}
        return cls(
            needed=frozenset(used - PROVIDED_VARIABLES - shared.keys()),
            subject_vars=frozenset(variables_of(content["subject"]) - PROVIDED_VARIABLES),
            shared=shared,
            domain=message_id_domain(parse_mailbox(content["from"]).address),
        )


async def add_recipients(
    conn: asyncpg.Connection,
    campaign_id: int,
    recipients: Recipients,
) -> Added:
    """Add recipients to a campaign (in chunks, one transaction). A recipient already in it
    is counted in `duplicates` and ignored. CampaignNotFound, CampaignClosed (cancelled)."""
    async with conn.transaction():
        row = await db.campaign_lock(conn, campaign_id)
        if row is None:
            raise CampaignNotFound(f"campaign {campaign_id}: no such campaign")
        if row["status"] == "cancelled":
            raise CampaignClosed(f"campaign {campaign_id}: cancelled, it takes no recipients")
        return await insert_recipients(conn, row, recipients)


async def insert_recipients(
    conn: asyncpg.Connection, row: Mapping[str, Any], recipients: Recipients
) -> Added:
    """Check and insert recipients into the campaign of `row` (locked by the caller, inside
    its transaction), CHUNK at a time; held far in the future while the campaign is paused.
    A chunk is checked while the one before it is being written (one in flight)."""
    shape = Shape.of(json.loads(row["content"]))
    ascii_lower, has_emails = await db.email_recipients_setup(conn, row["id"])
    writer = _Writer(conn, row, shape.domain, by_copy=ascii_lower, look_up_all=has_emails)
    seen = 0
    try:
        async for items in _batches(recipients):
            for item in items:
                seen += 1
                if writer.add(*_recipient(item, seen - 1, shape)):
                    await writer.flush()
            await asyncio.sleep(0)  # the chunk being written goes on meanwhile
        await writer.flush()
        await writer.settle()
    finally:
        await writer.abandon()
    return Added(added=writer.added, duplicates=seen - writer.added, suppressed=writer.suppressed)


async def _batches(recipients: Recipients, size: int = 1000) -> AsyncIterator[list[_Item]]:
    """The recipients a batch at a time (a plain iterable without an await per item)."""
    if isinstance(recipients, AsyncIterable):
        batch: list[_Item] = []
        async for item in recipients:
            batch.append(item)
            if len(batch) >= size:
                yield batch
                batch = []
        if batch:
            yield batch
        return
    iterator = iter(recipients)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


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


class _Writer:
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
        by_copy: bool,
        look_up_all: bool,
    ) -> None:
        self.conn, self.row, self.domain = conn, row, domain
        self.by_copy, self.look_up_all = by_copy, look_up_all
        self.run_at = PAUSED_UNTIL if row["status"] == "paused" else row["send_at"]
        self._filter = bytearray(_FILTER_BITS // 8)
        self.chunk = _Chunk(look_up_all=look_up_all)
        self.writing: asyncio.Task[tuple[int, int]] | None = None
        self.added = self.suppressed = 0

    def add(self, address: str, name: str | None, content: str) -> bool:
        """Add a checked recipient to the chunk; True when the chunk is full."""
        chunk = self.chunk
        if not (self.by_copy and address.isascii()):
            chunk.others.append((address, name, content))
            self.look_up_all = True
            return len(chunk) >= CHUNK
        key = address.lower()
        if key in chunk.seen:
            return False
        chunk.seen.add(key)
        bit = hash(key) & (_FILTER_BITS - 1)
        if self._filter[bit >> 3] & (1 << (bit & 7)):
            chunk.candidates.append(key)
        else:
            self._filter[bit >> 3] |= 1 << (bit & 7)
        chunk.addresses.append(address)
        chunk.names.append(name)
        chunk.contents.append(content)
        chunk.keys.append(key)
        return len(chunk.keys) >= CHUNK

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
        first = (row["kind"], row["priority"], self.run_at, row["send_at"], row["max_attempts"])
        campaign_id, expires_at, domain = row["id"], row.get("expires_at"), self.domain
        suppressed, present = held.suppressed, held.present
        hexes = os.urandom(16 * len(chunk.keys)).hex()
        rows = zip(chunk.addresses, chunk.names, chunk.contents, chunk.keys, strict=True)
        for i, (address, name, content, key) in enumerate(rows):
            if present and key in present:
                continue
            message_id = f"<{hexes[32 * i : 32 * i + 32]}@{domain}>"
            reason = suppressed.get(key) if suppressed else None
            if reason is None:
                state: tuple[Any, ...] = ("waiting", None, None)
            else:
                state = ("cancelled", held.now, f"suppressed: {reason}")
            yield (*first, address, message_id, content, campaign_id, *state, name, expires_at)


def _recipient(item: object, index: int, shape: Shape) -> tuple[str, str | None, str]:
    """Check one recipient; its bare address, display name and the `content` of its email
    as JSON."""
    address: object
    context: object
    if type(item) is Recipient or isinstance(item, Recipient):
        address, context = item.email, item.context
    elif isinstance(item, str):
        address, context = item, {}
    elif isinstance(item, Mapping):
        unknown = set(item) - {"email", "context"}
        if unknown:
            raise InvalidEmail(f"recipients[{index}].{sorted(unknown)[0]}: unknown field")
        address, context = item.get("email"), item.get("context") or {}
    else:
        raise InvalidEmail(f"recipients[{index}]: must be an object with email and context")
    if not isinstance(address, str) or not address:
        raise InvalidEmail(f"recipients[{index}].email: an email address is required")
    address = address.strip()
    display_name = None
    if not is_plain_address(address):  # the common case needs no Mailbox
        try:
            mailbox = parse_mailbox(address)
        except AddressError as problem:
            raise InvalidEmail(
                f"recipients[{index}].email: {quoted(address)} is not a valid email address "
                f"({problem})"
            ) from None
        address, display_name = mailbox.address, mailbox.name
    if type(context) is not dict and not isinstance(context, Mapping):
        raise InvalidEmail(f"recipients[{index}].context: must be an object")
    missing = shape.needed - context.keys()
    if missing:
        raise InvalidEmail(
            f"recipients[{index}].context: the template uses {', '.join(sorted(missing))}, "
            "which the context lacks"
        )
    for name in shape.subject_vars & context.keys():
        value = context[name]
        if isinstance(value, str) and _CONTROL.search(value):
            raise InvalidEmail(
                f"recipients[{index}].context.{name}: control characters (CR, LF, ...) are "
                "not allowed in a value the subject uses"
            )
    merged = {**shape.shared, **context} if shape.shared else context
    text = _plain_json(merged)
    if text is None:
        try:
            text = _JSON.encode({"context": merged})
        except (TypeError, ValueError) as exc:
            raise InvalidEmail(
                f"recipients[{index}].context: values must be JSON ({exc})"
            ) from None
    if "\\u0000" in text:
        raise InvalidEmail(f"recipients[{index}].context: NUL characters are not allowed")
    return address, display_name, text


def _plain_json(context: object) -> str | None:
    """`{"context": ...}` as JSON when the context is a dict of strings (CSV rows, most
    contexts), which orjson encodes as the standard encoder would; None for anything else."""
    if type(context) is not dict or not all(type(v) is str for v in context.values()):
        return None
    try:
        return orjson.dumps({"context": context}).decode()
    except TypeError:  # a key that is not a string, a lone surrogate: the standard encoder's
        return None


def recipients_from_csv(stream: TextIO) -> Iterator[Recipient]:
    """Recipients from a CSV with a header row: column `email`, the others become the
    recipient's context (as strings). Read lazily, row by row."""
    reader = csv.DictReader(stream)
    if reader.fieldnames is None or "email" not in reader.fieldnames:
        raise InvalidEmail("csv: the first row must name the columns, one of them `email`")
    for number, row in enumerate(reader, start=2):
        if None in row:
            raise InvalidEmail(f"csv line {number}: more cells than columns")
        address = row.pop("email") or ""
        yield Recipient(address, {k: v or "" for k, v in row.items()})
