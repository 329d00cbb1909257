"""Resend webhooks (`POST /v1/webhooks/resend`), signed the Svix way.

Headers `svix-id`, `svix-timestamp` (Unix seconds) and `svix-signature` (space-separated
`v1,<base64>` entries: several during a secret rotation). The signature is the base64
HMAC-SHA256 of `<svix-id>.<svix-timestamp>.<body>` keyed with the base64-decoded part of the
secret after `whsec_`. Any one matching `v1` entry passes (constant-time compares); the
timestamp must be within the window either way. `svix-id` stays the same on Svix's retries and
is the event's de-duplication id.

Event types: `email.delivered`, `email.bounced` (`data.bounce.type` Permanent → hard, else
soft), `email.complained`, `email.delivery_delayed`; the others (sent, opened, clicked, failed,
scheduled, suppressed, contact.*, domain.*) give no event. Tag `mailq_email_id` (in `data.tags`,
as an object or as name/value pairs), when the sender set it, names the email.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from mailq.bounces.classify import classify
from mailq.bounces.errors import BadSignature
from mailq.bounces.events import Event, EventType, Subtype, clean_text
from mailq.bounces.webhooks.common import (
    EMAIL_ID_TAG,
    SIGNATURE_TOLERANCE_S,
    Origin,
    check_window,
    email_id_of,
    iso_time,
    items,
    load_json,
    lowered,
    mapping,
    now_seconds,
    parse_unix,
    required_header,
    section_seconds,
    section_text,
    text,
)
from mailq.errors import ConfigError

PROVIDER = "resend"
SECRET_PREFIX = "whsec_"


def load_secret(value: str) -> bytes:
    """The HMAC key of a `whsec_…` signing secret."""
    encoded = value.strip().removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if not key:
        raise ConfigError(
            "[webhooks.resend] secret: not a signing secret (copy the whsec_… value shown for "
            "the webhook in Resend)"
        )
    return key


class ResendWebhook:
    """Verifies the Svix signature of Resend's webhooks and maps their events."""

    provider = PROVIDER

    def __init__(self, secret: str, *, tolerance_s: float = SIGNATURE_TOLERANCE_S) -> None:
        self._key = load_secret(secret)
        self._tolerance_s = tolerance_s

    @classmethod
    def from_section(cls, section: Mapping[str, object]) -> ResendWebhook:
        """From `[webhooks.resend]`: `secret`, optional `tolerance_s`."""
        return cls(
            section_text(section, PROVIDER, "secret"),
            tolerance_s=section_seconds(section, PROVIDER, "tolerance_s", SIGNATURE_TOLERANCE_S),
        )

    def verify(self, headers: Mapping[str, str], body: bytes, *, now: datetime | None) -> str:
        """Check the signature, then the timestamp; the message id (`svix-id`)."""
        hdrs = lowered(headers)
        message_id = required_header(hdrs, "svix-id")
        timestamp = required_header(hdrs, "svix-timestamp")
        signatures = required_header(hdrs, "svix-signature")
        signed = f"{message_id}.{timestamp}.".encode() + body
        expected = base64.b64encode(hmac.new(self._key, signed, hashlib.sha256).digest())
        matched = False
        for entry in signatures.split():
            version, _, value = entry.partition(",")
            if version == "v1":
                matched |= hmac.compare_digest(expected, value.encode("ascii", "replace"))
        if not matched:
            raise BadSignature("the Svix signature does not match the body")
        check_window(parse_unix(timestamp), now_seconds(now), self._tolerance_s)
        return message_id

    async def receive(
        self, headers: Mapping[str, str], body: bytes, *, now: datetime | None = None
    ) -> tuple[Event, ...]:
        svix_id = self.verify(headers, body, now=now)
        return tuple(resend_events(mapping(load_json(body)), svix_id=svix_id))


def resend_events(payload: Mapping[str, Any], *, svix_id: str | None = None) -> list[Event]:
    """The events of one Resend webhook payload."""
    kind = text(payload.get("type"))
    data = mapping(payload.get("data"))
    to = [address for entry in items(data.get("to")) if (address := text(entry))]
    if isinstance(data.get("to"), str):
        to = [data["to"]]
    recipient = to[0] if len(to) == 1 else None
    origin = Origin(
        provider=PROVIDER,
        provider_message_id=text(data.get("email_id")),
        message_id=None,
        email_id=email_id_of(_tag(data.get("tags"), EMAIL_ID_TAG)),
    )
    common: dict[str, Any] = {
        "recipient": recipient,
        "occurred_at": iso_time(payload.get("created_at")),
        "provider_event_id": svix_id,
    }
    if kind == "email.delivered":
        return [Event(type=EventType.DELIVERED, **common, **origin)]
    if kind == "email.complained":
        return [Event(type=EventType.COMPLAINED, feedback_type="abuse", **common, **origin)]
    if kind == "email.bounced":
        bounce = mapping(data.get("bounce"))
        diagnostic = clean_text(bounce.get("message"))
        found = classify(None, diagnostic)
        subtype = Subtype.HARD if bounce.get("type") == "Permanent" else Subtype.SOFT
        return [
            Event(
                type=EventType.BOUNCED,
                subtype=subtype,
                status=found.status,
                diagnostic=diagnostic or text(bounce.get("subType")),
                sender_side=found.sender_side,
                **common,
                **origin,
            )
        ]
    if kind == "email.delivery_delayed":
        return [Event(type=EventType.DEFERRED, **common, **origin)]
    return []


def _tag(tags: object, name: str) -> object:
    if isinstance(tags, Mapping):
        return tags.get(name)
    for entry in items(tags):
        if mapping(entry).get("name") == name:
            return mapping(entry).get("value")
    return None
