"""Campaigns at the HTTP edge: request bodies checked into mailq.campaigns values, campaigns
turned into responses, and the JSON Schemas of both for /openapi.json.

The campaign's content and each recipient are checked by mailq.campaigns itself (messages
name `recipients[i].email`, `subject`, ...); this module checks the JSON types and the kind.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from mailq.campaigns import NAME_MAX_CHARS, Campaign, NewCampaign
from mailq.errors import InvalidEmail
from mailq.kinds import MAX_ATTEMPTS_LIMIT, KindPolicy
from mailq.service.errors import ApiError
from mailq.service.openapi import KINDS_MARKER
from mailq.service.schemas.emails import STATES, iso, known_kind
from mailq.service.schemas.events import RATES
from mailq.service.schemas.fields import ADDRESS, ADDRESSES, HEADERS, ID, NO_NUL, ONE_LINE, TEMPLATE
from mailq.wire import parse_send_at, parse_time

FIELDS = frozenset(
    {
        "name",
        "kind",
        "subject",
        "text",
        "html",
        "template",
        "context",
        "send_at",
        "from",
        "reply_to",
        "headers",
        "priority",
        "max_attempts",
        "expires_at",
        "recipients",
    }
)
_STRINGS = ("name", "kind", "subject", "text", "html", "template", "from")


def _whole(data: Mapping[str, Any], name: str) -> int | None:
    value = data.get(name)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise InvalidEmail(f"{name}: must be a whole number")
    return value


def recipients_of(data: Mapping[str, Any], *, required: bool) -> list[Any]:
    """The `recipients` list of a body (each item is checked by mailq.campaigns)."""
    recipients = data.get("recipients")
    if recipients is None and not required:
        return []
    if not isinstance(recipients, list):
        raise InvalidEmail('recipients: a list of {"email": ..., "context": {...}} is required')
    return recipients


def new_campaign(
    data: object, kinds: Mapping[str, KindPolicy], now: datetime | None = None
) -> tuple[NewCampaign, list[Any]]:
    """The campaign a `POST /v1/campaigns` body describes, and its first recipients.
    `send_at` defaults to now (the campaign is sent at once)."""
    if not isinstance(data, dict):
        raise ApiError(400, "body: must be a JSON object (one campaign)")
    unknown = sorted(set(data) - FIELDS)
    if unknown:
        raise InvalidEmail(f"{unknown[0]}: unknown field")
    for name in _STRINGS:
        if data.get(name) is not None and not isinstance(data[name], str):
            raise InvalidEmail(f"{name}: must be a string")
    for name in ("context", "headers"):
        if data.get(name) is not None and not isinstance(data[name], dict):
            raise InvalidEmail(f"{name}: must be an object")
    reply_to = data.get("reply_to")
    if reply_to is not None and not isinstance(reply_to, list):
        raise InvalidEmail("reply_to: must be a list of addresses")
    if not data.get("name"):
        raise InvalidEmail("name: required")
    if data.get("kind") is None:
        raise InvalidEmail("kind: required (a configured campaign kind)")
    kind = known_kind(data["kind"], kinds)
    send_at = parse_send_at(data.get("send_at")) or now or datetime.now(UTC)
    campaign = NewCampaign(
        name=data["name"],
        kind=kind,
        send_at=send_at,
        subject=data.get("subject"),
        text=data.get("text"),
        html=data.get("html"),
        template=data.get("template"),
        context=data.get("context") or {},
        from_address=data.get("from"),
        reply_to=tuple(reply_to or ()),
        headers=data.get("headers") or {},
        priority=_whole(data, "priority"),
        max_attempts=_whole(data, "max_attempts"),
        expires_at=parse_time(data.get("expires_at"), "expires_at"),
    )
    return campaign, recipients_of(data, required=False)


def more_recipients(data: object) -> list[Any]:
    """The recipients of a `POST /v1/campaigns/{id}/recipients` body."""
    if not isinstance(data, dict):
        raise ApiError(400, 'body: must be a JSON object {"recipients": [...]}')
    unknown = sorted(set(data) - {"recipients"})
    if unknown:
        raise InvalidEmail(f"{unknown[0]}: unknown field")
    return recipients_of(data, required=True)


def campaign_view(campaign: Campaign) -> dict[str, Any]:
    progress = dict.fromkeys(STATES, 0)
    progress.update(campaign.progress)
    return {
        "id": campaign.id,
        "name": campaign.name,
        "kind": campaign.kind,
        "status": campaign.status,
        "subject": campaign.content.get("subject"),
        "send_at": iso(campaign.send_at),
        "priority": campaign.priority,
        "max_attempts": campaign.max_attempts,
        "expires_at": iso(campaign.expires_at),
        "created_at": iso(campaign.created_at),
        "updated_at": iso(campaign.updated_at),
        "recipients": campaign.recipients,
        "progress": progress,
    }


# -- JSON Schemas (OpenAPI 3.1) ------------------------------------------------------------

RECIPIENT: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["email"],
    "properties": {"email": ADDRESS, "context": {"type": "object"}},
}
RECIPIENTS: dict[str, Any] = {"type": "array", "items": RECIPIENT}
CAMPAIGN: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "kind"],
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": NAME_MAX_CHARS},
        "kind": {"type": "string", KINDS_MARKER: True},
        "subject": {"type": "string", "minLength": 1, "maxLength": 998, "pattern": ONE_LINE},
        "text": {"type": "string", "minLength": 1, "pattern": NO_NUL},
        "html": {"type": "string", "minLength": 1, "pattern": NO_NUL},
        "template": TEMPLATE,
        "context": {"type": "object", "description": "shared by every recipient"},
        "send_at": {
            "type": "string",
            "format": "date-time",
            "description": "RFC 3339 with an offset; default: now",
        },
        "from": ADDRESS,
        "reply_to": ADDRESSES,
        "headers": HEADERS,
        "priority": {"type": "integer", "minimum": 0, "maximum": 9},
        "max_attempts": {"type": "integer", "minimum": 1, "maximum": MAX_ATTEMPTS_LIMIT},
        "expires_at": {
            "type": "string",
            "format": "date-time",
            "description": "its emails not handed to the server by then are not sent",
        },
        "recipients": RECIPIENTS,
    },
}
ADD_RECIPIENTS: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["recipients"],
    "properties": {"recipients": RECIPIENTS},
}
ADDED: dict[str, Any] = {
    "type": "object",
    "required": ["added", "duplicates"],
    "properties": {
        "added": {"type": "integer", "description": "emails created (suppressed included)"},
        "duplicates": {"type": "integer", "description": "already in the campaign; ignored"},
        "suppressed": {"type": "integer", "description": "of added, stored cancelled"},
    },
}
CAMPAIGN_CREATED: dict[str, Any] = {
    "type": "object",
    "required": ["id", "recipients"],
    "properties": {
        "id": ID,
        "recipients": {"type": "integer", "description": "emails created"},
        "duplicates": {"type": "integer"},
        "suppressed": {"type": "integer"},
    },
}
CAMPAIGN_VIEW: dict[str, Any] = {
    "type": "object",
    "required": ["id", "name", "kind", "status", "recipients", "progress"],
    "properties": {
        "id": ID,
        "name": {"type": "string"},
        "kind": {"type": "string"},
        "status": {"type": "string", "enum": ["active", "paused", "cancelled"]},
        "subject": {"type": ["string", "null"]},
        "send_at": {"type": "string", "format": "date-time"},
        "priority": {"type": "integer"},
        "max_attempts": {"type": ["integer", "null"]},
        "expires_at": {"type": ["string", "null"], "format": "date-time"},
        "created_at": {"type": "string", "format": "date-time"},
        "updated_at": {"type": "string", "format": "date-time"},
        "recipients": {"type": "integer"},
        "progress": {
            "type": "object",
            "description": "the campaign's emails by state",
            "additionalProperties": {"type": "integer"},
        },
        "changed": {"type": "integer", "description": "(pause/resume/cancel) emails changed"},
        "rates": RATES,
        "paused_reason": {
            "type": ["string", "null"],
            "description": "why the bounce breaker paused the campaign (null otherwise)",
        },
    },
}
