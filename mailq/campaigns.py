"""Campaigns: one email per recipient, sent when the campaign's time comes.

A campaign stores its content (subject, text, html or a template, shared context) once;
each recipient becomes an email of the campaign's kind that stores only the recipient's
context, inserted in bulk, chunk by chunk, from any iterator: a million recipients never
sit in memory at once. A recipient gets a campaign at most once (a unique index on the
campaign and the address, without case): adding them again is counted as a duplicate and
ignored. A recipient on the suppression list is stored `cancelled` with the reason.

A template's variables are checked per recipient without rendering anything: the set of
variables the content needs is computed once, and each recipient's context is checked
against it (a missing one refuses the whole call, naming the recipient and the variable).

Pause holds the campaign's waiting emails (due in the far future), resume releases them (due
at `send_at`, or now), cancel turns what is not yet sent into `cancelled`. Emails already
handed to a worker finish their attempt. Progress by public state comes from the
`mailq.campaign_progress` view.

Every function takes an asyncpg connection (or pool, for the read-only ones); changes run
in one transaction (a savepoint of the caller's when one is open): all or nothing.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import AsyncIterable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TextIO

import asyncpg

from mailq.addresses import AddressError, is_plain_address, message_id_domain, parse_mailbox
from mailq.compose.templates import (
    PROVIDED_VARIABLES,
    TemplateStore,
    variables_of,
)
from mailq.db import campaigns as db
from mailq.errors import CampaignClosed, CampaignNotFound, InvalidEmail, quoted
from mailq.kinds import KindPolicy
from mailq.models import Email
from mailq.streams import each
from mailq.validation import (
    build_content,
    check_expires_at,
    check_kind,
    check_max_attempts,
    check_priority,
    check_send_at,
    content_json,
)

# Recipients inserted per statement: big enough to amortise the round trip, small enough
# that a chunk's arrays stay a few MB.
CHUNK = 10_000
PAUSED_UNTIL = datetime(9999, 12, 31, tzinfo=UTC)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_JSON = json.JSONEncoder(separators=(",", ":"), allow_nan=False)
CANCEL_REASON = "campaign cancelled"
NAME_MAX_CHARS = 200


@dataclass(frozen=True, slots=True)
class Recipient:
    """One recipient: the address (bare, or a mailbox `Name <address>`) and the context its
    email is rendered with."""

    email: str
    context: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class NewCampaign:
    """What a campaign sends: content inline (subject/text/html) or a `template` name (by
    default the kind's), rendered with the shared `context` and each recipient's own."""

    name: str
    kind: str
    send_at: datetime
    subject: str | None = None
    text: str | None = None
    html: str | None = None
    template: str | None = None
    context: Mapping[str, Any] = field(default_factory=dict)
    from_address: str | None = None
    reply_to: Sequence[str] = ()
    headers: Mapping[str, str] = field(default_factory=dict)
    priority: int | None = None
    max_attempts: int | None = None
    # Its emails not handed to the server by then are not sent (failed, `expired`).
    expires_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Added:
    """The outcome of adding recipients."""

    added: int  # emails created (suppressed ones included, stored cancelled)
    duplicates: int  # recipients already in the campaign (or twice in the input)
    suppressed: int = 0  # of `added`, recipients on the suppression list


@dataclass(frozen=True, slots=True)
class Campaign:
    id: int
    name: str
    kind: str
    status: str
    send_at: datetime
    priority: int
    max_attempts: int | None
    content: Mapping[str, Any]
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None = None
    # Emails by public state (scheduled, queued, sending, sent, ...), when asked for.
    progress: Mapping[str, int] = field(default_factory=dict)

    @property
    def recipients(self) -> int:
        return sum(self.progress.values())

    @classmethod
    def from_row(
        cls, row: Mapping[str, Any], progress: Mapping[str, int] | None = None
    ) -> Campaign:
        return cls(
            id=row["id"],
            name=row["name"],
            kind=row["kind"],
            status=row["status"],
            send_at=row["send_at"],
            priority=row["priority"],
            max_attempts=row["max_attempts"],
            content=json.loads(row["content"]),
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            expires_at=row.get("expires_at"),
            progress=dict(progress or {}),
        )


@dataclass(frozen=True, slots=True)
class _Shape:
    """What every recipient of a campaign is checked against, computed once."""

    needed: frozenset[str]  # variables the content uses that the shared context lacks
    subject_vars: frozenset[str]  # variables of the subject (no line breaks allowed)
    shared: Mapping[str, Any]
    domain: str

    @classmethod
    def of(cls, content: Mapping[str, Any]) -> _Shape:
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


async def create_campaign(
    conn: asyncpg.Connection,
    campaign: NewCampaign,
    recipients: Iterable[Recipient | Mapping[str, Any] | str]
    | AsyncIterable[Recipient | Mapping[str, Any] | str] = (),
    *,
    default_from: str | None = None,
    kinds: Mapping[str, KindPolicy] | None = None,
    templates: TemplateStore | None = None,
) -> tuple[Campaign, Added]:
    """Create a campaign and add its recipients, streamed in chunks, in one transaction.

    Recipients are `Recipient`s, `{"email": ..., "context": {...}}` mappings or plain
    addresses. InvalidEmail names the bad field (`recipients[i].email`, ...): nothing is
    written then. `default_from`, `kinds` and `templates` not given come from MAILQ_FROM and
    MAILQ_CONFIG (mailq.config.from_environment), as for mailq.enqueue."""
    from mailq.enqueue import configured

    default_from, kinds, templates = configured(default_from, kinds, templates)
    policy = check_kind(campaign.kind, kinds)
    name = campaign.name.strip() if isinstance(campaign.name, str) else ""
    if not name or len(name) > NAME_MAX_CHARS or any(ord(c) < 32 for c in name):
        raise InvalidEmail(f"name: required, one line of at most {NAME_MAX_CHARS} characters")
    if campaign.send_at is None:
        raise InvalidEmail("send_at: required")
    send_at = check_send_at(campaign.send_at, datetime.now(UTC))
    assert send_at is not None
    as_email = Email(
        to="recipient@example.com",
        kind=campaign.kind,
        subject=campaign.subject,
        text=campaign.text,
        html=campaign.html,
        template=campaign.template,
        context=campaign.context,
        reply_to=campaign.reply_to,
        headers=campaign.headers,
        from_address=campaign.from_address,
    )
    content = build_content(
        as_email, policy, default_from=default_from, templates=templates, per_recipient=True
    )
    priority = check_priority(campaign.priority, policy)
    max_attempts = check_max_attempts(campaign.max_attempts, policy)
    expires_at = check_expires_at(campaign.expires_at, datetime.now(UTC), send_at)
    async with conn.transaction():
        row = await db.campaign_insert(
            conn,
            name,
            campaign.kind,
            send_at,
            priority,
            max_attempts,
            content_json(content),
            expires_at,
        )
        added = await _add(conn, row, recipients)
    return Campaign.from_row(row), added


async def add_recipients(
    conn: asyncpg.Connection,
    campaign_id: int,
    recipients: Iterable[Recipient | Mapping[str, Any] | str]
    | AsyncIterable[Recipient | Mapping[str, Any] | str],
) -> Added:
    """Add recipients to a campaign (in chunks, one transaction). A recipient already in it
    is counted in `duplicates` and ignored. CampaignNotFound, CampaignClosed (cancelled)."""
    async with conn.transaction():
        row = await db.campaign_lock(conn, campaign_id)
        if row is None:
            raise CampaignNotFound(f"campaign {campaign_id}: no such campaign")
        if row["status"] == "cancelled":
            raise CampaignClosed(f"campaign {campaign_id}: cancelled, it takes no recipients")
        return await _add(conn, row, recipients)


async def _add(
    conn: asyncpg.Connection,
    row: Mapping[str, Any],
    recipients: Iterable[Recipient | Mapping[str, Any] | str]
    | AsyncIterable[Recipient | Mapping[str, Any] | str],
) -> Added:
    shape = _Shape.of(json.loads(row["content"]))
    run_at = PAUSED_UNTIL if row["status"] == "paused" else row["send_at"]
    added = suppressed = seen = 0
    addresses: list[str] = []
    names: list[str | None] = []
    message_ids: list[str] = []
    contents: list[str] = []

    async def flush() -> None:
        nonlocal added, suppressed
        inserted, held = await db.email_insert_recipients(
            conn,
            row["id"],
            addresses,
            message_ids,
            contents,
            kind=row["kind"],
            priority=row["priority"],
            max_attempts=row["max_attempts"],
            run_at=run_at,
            send_at=row["send_at"],
            names=names,
            expires_at=row.get("expires_at"),
        )
        added += inserted
        suppressed += held
        addresses.clear()
        names.clear()
        message_ids.clear()
        contents.clear()

    async for recipient in each(recipients):
        address, name, context = _recipient(recipient, seen, shape)
        addresses.append(address)
        names.append(name)
        message_ids.append(f"<{os.urandom(16).hex()}@{shape.domain}>")
        contents.append(context)
        seen += 1
        if len(addresses) >= CHUNK:
            await flush()
    if addresses:
        await flush()
    return Added(added=added, duplicates=seen - added, suppressed=suppressed)


def _recipient(item: object, index: int, shape: _Shape) -> tuple[str, str | None, str]:
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


# -- pause, resume, cancel, read -------------------------------------------------------------


async def pause_campaign(conn: asyncpg.Connection, campaign_id: int) -> int:
    """Hold what the campaign has not sent; returns how many emails were held."""
    async with conn.transaction():
        row = await _locked(conn, campaign_id)
        if row["status"] == "cancelled":
            raise CampaignClosed(f"campaign {campaign_id}: cancelled, it cannot be paused")
        await db.campaign_set_status(conn, campaign_id, "paused")
        return await db.email_pause_campaign(conn, campaign_id)


async def resume_campaign(conn: asyncpg.Connection, campaign_id: int) -> int:
    """Release a paused campaign: its emails are due at send_at (or now); returns how many."""
    async with conn.transaction():
        row = await _locked(conn, campaign_id)
        if row["status"] == "cancelled":
            raise CampaignClosed(f"campaign {campaign_id}: cancelled, it cannot be resumed")
        await db.campaign_set_status(conn, campaign_id, "active")
        return await db.email_resume_campaign(conn, campaign_id, row["send_at"])


async def cancel_campaign(conn: asyncpg.Connection, campaign_id: int) -> int:
    """Cancel what the campaign has not sent (waiting or unknown); returns how many."""
    async with conn.transaction():
        await _locked(conn, campaign_id)
        await db.campaign_set_status(conn, campaign_id, "cancelled")
        return await db.email_cancel_campaign(conn, campaign_id, CANCEL_REASON)


async def get_campaign(
    conn: asyncpg.Connection | asyncpg.Pool, campaign_id: int, *, progress: bool = True
) -> Campaign:
    """A campaign with its emails counted by public state; CampaignNotFound otherwise."""
    row = await db.campaign_get(conn, campaign_id)
    if row is None:
        raise CampaignNotFound(f"campaign {campaign_id}: no such campaign")
    counts = await db.campaign_progress(conn, campaign_id) if progress else {}
    return Campaign.from_row(row, counts)


async def list_campaigns(
    conn: asyncpg.Connection | asyncpg.Pool, *, limit: int = 100, before_id: int | None = None
) -> list[Campaign]:
    """Campaigns, newest first (without progress); page with `before_id`."""
    return [Campaign.from_row(r) for r in await db.campaign_list(conn, limit, before_id)]


async def _locked(conn: asyncpg.Connection, campaign_id: int) -> Mapping[str, Any]:
    row = await db.campaign_lock(conn, campaign_id)
    if row is None:
        raise CampaignNotFound(f"campaign {campaign_id}: no such campaign")
    return row


# -- CSV ---------------------------------------------------------------------------------


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


__all__ = [
    "Added",
    "Campaign",
    "NewCampaign",
    "Recipient",
    "add_recipients",
    "cancel_campaign",
    "create_campaign",
    "get_campaign",
    "list_campaigns",
    "pause_campaign",
    "recipients_from_csv",
    "resume_campaign",
]
