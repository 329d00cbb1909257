"""The JSON of delivery events (`GET /v1/emails/{id}` `events`, `GET /v1/events`) and of the
bounce and complaint rates (`GET /v1/stats`, `GET /v1/campaigns/{id}`)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from mailq.bounces.rates import COUNTS, rates_view

TIMESTAMP = {"type": ["string", "null"], "format": "date-time"}
# Rates per kind count the events of this many days (mailq.bounces, the default retention).
RATE_DAYS = 14
EVENT_TYPES = ["delivered", "bounced", "complained", "unsubscribed", "deferred"]

EVENT: dict[str, Any] = {
    "type": "object",
    "required": ["id", "type", "provider", "received_at"],
    "properties": {
        "id": {"type": "integer"},
        "email_id": {"type": ["integer", "null"]},
        "kind": {"type": ["string", "null"]},
        "campaign_id": {"type": ["integer", "null"]},
        "type": {"type": "string", "enum": EVENT_TYPES},
        "subtype": {"type": ["string", "null"], "enum": ["hard", "soft", None]},
        "sender_side": {
            "type": "boolean",
            "description": "a refusal about the sender (5.7.26, 4.7.x ...): suppresses nobody",
        },
        "provider": {"type": "string"},
        "recipient": {"type": ["string", "null"]},
        "status_code": {"type": ["string", "null"]},
        "diagnostic": {"type": ["string", "null"]},
        "feedback_type": {"type": ["string", "null"]},
        "occurred_at": TIMESTAMP,
        "received_at": TIMESTAMP,
    },
}
EVENT_LIST: dict[str, Any] = {
    "type": "object",
    "required": ["events", "next_after_id"],
    "properties": {
        "events": {"type": "array", "items": EVENT},
        "next_after_id": {"type": ["integer", "null"]},
    },
}

RATES: dict[str, Any] = {
    "type": "object",
    "description": "events counted against emails sent; rates are null before anything is sent",
    "properties": {
        **{name: {"type": "integer"} for name in COUNTS},
        "bounced": {"type": "integer", "description": "hard + soft + rejected"},
        "delivered_rate": {"type": ["number", "null"]},
        "bounce_rate": {"type": ["number", "null"]},
        "hard_bounce_rate": {
            "type": ["number", "null"],
            "description": "hard bounces and refusals about the sender per email sent",
        },
        "complaint_rate": {"type": ["number", "null"]},
    },
}


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def event_view(row: Mapping[str, Any]) -> dict[str, Any]:
    view = {name: row.get(name) for name in EVENT["properties"] if name in row}
    view["occurred_at"] = _iso(row.get("occurred_at"))
    view["received_at"] = _iso(row.get("received_at"))
    return view


__all__ = ["EVENT", "EVENT_LIST", "RATES", "event_view", "rates_view"]
