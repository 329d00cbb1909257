"""A campaign: its values, its creation (content checked once, recipients added in the same
transaction) and reading it back with its progress by public state (the
`mailq.campaign_progress` view)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg

from mailq.campaigns.recipients import Added, Recipients, insert_recipients
from mailq.compose.templates import TemplateStore
from mailq.db import campaigns as db
from mailq.enqueue import configured
from mailq.errors import CampaignNotFound, InvalidEmail
from mailq.kinds import KindPolicy
from mailq.models import Email
from mailq.validation import (
    build_content,
    check_expires_at,
    check_kind,
    check_max_attempts,
    check_priority,
    check_send_at,
    content_json,
)

NAME_MAX_CHARS = 200


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


async def create_campaign(
    conn: asyncpg.Connection,
    campaign: NewCampaign,
    recipients: Recipients = (),
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
        added = await insert_recipients(conn, row, recipients)
    return Campaign.from_row(row), added


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
