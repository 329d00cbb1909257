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
import json
import os
import re
from collections.abc import AsyncIterable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TextIO, TypeAlias

import asyncpg

from mailq.addresses import AddressError, is_plain_address, message_id_domain, parse_mailbox
from mailq.compose.templates import PROVIDED_VARIABLES, variables_of
from mailq.db import campaigns as db
from mailq.errors import CampaignClosed, CampaignNotFound, InvalidEmail, quoted
from mailq.streams import each

# Recipients inserted per statement: big enough to amortise the round trip, small enough
# that a chunk's arrays stay a few MB.
CHUNK = 10_000
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


@dataclass(slots=True)
class _Chunk:
    """Recipients checked and waiting to be inserted, as the statement's arrays."""

    addresses: list[str] = field(default_factory=list)
    names: list[str | None] = field(default_factory=list)
    message_ids: list[str] = field(default_factory=list)
    contents: list[str] = field(default_factory=list)


async def insert_recipients(
    conn: asyncpg.Connection, row: Mapping[str, Any], recipients: Recipients
) -> Added:
    """Check and insert recipients into the campaign of `row` (locked by the caller, inside
    its transaction), CHUNK at a time; held far in the future while the campaign is paused.
    A chunk is checked while the one before it is being written (one in flight)."""
    shape = Shape.of(json.loads(row["content"]))
    run_at = PAUSED_UNTIL if row["status"] == "paused" else row["send_at"]
    totals = [0, 0]  # inserted, of which suppressed
    writing: asyncio.Task[tuple[int, int]] | None = None

    async def settle() -> None:
        nonlocal writing
        if writing is not None:
            task, writing = writing, None
            inserted, held = await task
            totals[0] += inserted
            totals[1] += held

    def write(chunk: _Chunk) -> asyncio.Task[tuple[int, int]]:
        return asyncio.create_task(
            db.email_insert_recipients(
                conn,
                row["id"],
                chunk.addresses,
                chunk.message_ids,
                chunk.contents,
                kind=row["kind"],
                priority=row["priority"],
                max_attempts=row["max_attempts"],
                run_at=run_at,
                send_at=row["send_at"],
                names=chunk.names,
                expires_at=row.get("expires_at"),
            )
        )

    seen = 0
    chunk = _Chunk()
    try:
        async for recipient in each(recipients):
            address, name, context = _recipient(recipient, seen, shape)
            chunk.addresses.append(address)
            chunk.names.append(name)
            chunk.message_ids.append(f"<{os.urandom(16).hex()}@{shape.domain}>")
            chunk.contents.append(context)
            seen += 1
            if len(chunk.addresses) >= CHUNK:
                await settle()
                writing, chunk = write(chunk), _Chunk()
                await asyncio.sleep(0)  # its statement goes out before the next is built
        await settle()
        if chunk.addresses:
            writing = write(chunk)
        await settle()
    finally:
        if writing is not None:  # refused while a chunk was being written: let it end
            with contextlib.suppress(Exception):
                await writing
    return Added(added=totals[0], duplicates=seen - totals[0], suppressed=totals[1])


def _recipient(item: object, index: int, shape: Shape) -> tuple[str, str | None, str]:
    """Check one recipient; its bare address, display name and the `content` of its email
    as JSON."""
    address: object
    context: object
    if isinstance(item, Recipient):
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
    if not isinstance(context, Mapping):
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
    try:
        text = _JSON.encode({"context": merged})
    except (TypeError, ValueError) as exc:
        raise InvalidEmail(f"recipients[{index}].context: values must be JSON ({exc})") from None
    if "\\u0000" in text:
        raise InvalidEmail(f"recipients[{index}].context: NUL characters are not allowed")
    return address, display_name, text


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
