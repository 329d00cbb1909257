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
import csv
import itertools
import json
import re
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TextIO, TypeAlias

import asyncpg
import orjson

from mailq.addresses import AddressError, is_plain_address, message_id_domain, parse_mailbox
from mailq.campaigns.chunks import ChunkWriter
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
    writer = ChunkWriter(
        conn,
        row,
        shape.domain,
        run_at=PAUSED_UNTIL if row["status"] == "paused" else row["send_at"],
        by_copy=ascii_lower,
        look_up_all=has_emails,
        size=CHUNK,
        filter_bits=_FILTER_BITS,
    )
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
    if not shape.needed <= context.keys():
        missing = shape.needed - context.keys()
        raise InvalidEmail(
            f"recipients[{index}].context: the template uses {', '.join(sorted(missing))}, "
            "which the context lacks"
        )
    for name in shape.subject_vars & context.keys() if shape.subject_vars else ():
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
