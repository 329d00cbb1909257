"""Postmark webhooks (`POST /v1/webhooks/postmark`), verified by HTTP basic auth.

Postmark signs nothing; its documented protection is basic-auth credentials in the webhook URL
(`https://user:password@host/v1/webhooks/postmark`) and https. Both the username and the
password are compared in constant time, and both always, so the time taken does not tell which
was wrong.

Record types: `Bounce` (its `Type` decides: HardBounce, SoftBounce, Transient, DnsError,
SpamComplaint, Blocked, DMARCPolicy, ...), `SpamComplaint`, `Delivery` and `SubscriptionChange`
(a recipient's own unsubscribe, `SuppressionReason` ManualSuppression). Opens and clicks give
no events. Postmark's `Metadata.mailq_email_id`, when the sender set it, names the email.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from mailq.bounces.classify import classify
from mailq.bounces.errors import BadCredentials
from mailq.bounces.events import Event, EventType, Subtype, clean_text
from mailq.bounces.webhooks.common import (
    EMAIL_ID_TAG,
    Origin,
    email_id_of,
    iso_time,
    load_json,
    lowered,
    mapping,
    section_text,
    text,
)

PROVIDER = "postmark"

# Bounce Type → (event type, subtype, sender_side). Types not listed give no event
# (AutoResponder, AddressChange, ChallengeVerification, OpenRelayTest, Subscribe, InboundError...).
_BOUNCES: dict[str, tuple[EventType, Subtype | None, bool]] = {
    "HardBounce": (EventType.BOUNCED, Subtype.HARD, False),
    "BadEmailAddress": (EventType.BOUNCED, Subtype.HARD, False),
    "SoftBounce": (EventType.BOUNCED, Subtype.SOFT, False),
    "Transient": (EventType.BOUNCED, Subtype.SOFT, False),
    "DnsError": (EventType.BOUNCED, Subtype.SOFT, False),
    "Unknown": (EventType.BOUNCED, Subtype.SOFT, False),
    "Blocked": (EventType.BOUNCED, Subtype.SOFT, True),  # an ISP block of the sender
    "DMARCPolicy": (EventType.BOUNCED, Subtype.HARD, True),
    "SpamNotification": (EventType.BOUNCED, Subtype.SOFT, True),
    "VirusNotification": (EventType.BOUNCED, Subtype.SOFT, True),
    "SMTPApiError": (EventType.BOUNCED, Subtype.SOFT, True),
    "TemplateRenderingFailed": (EventType.BOUNCED, Subtype.HARD, True),
    "SpamComplaint": (EventType.COMPLAINED, None, False),
    "Unsubscribe": (EventType.UNSUBSCRIBED, None, False),
}


def _digest(value: str) -> bytes:
    return value.encode("utf-8")


class PostmarkWebhook:
    """Checks the basic-auth credentials, then maps Postmark's records to events."""

    provider = PROVIDER

    def __init__(self, username: str, password: str) -> None:
        self._username = _digest(username)
        self._password = _digest(password)

    @classmethod
    def from_section(cls, section: Mapping[str, object]) -> PostmarkWebhook:
        """From `[webhooks.postmark]`: `username`, `password`."""
        return cls(
            section_text(section, PROVIDER, "username"),
            section_text(section, PROVIDER, "password"),
        )

    def verify(self, headers: Mapping[str, str]) -> None:
        """`BadCredentials` unless the request carries the configured basic-auth pair."""
        authorization = lowered(headers).get("authorization", "")
        scheme, _, encoded = authorization.strip().partition(" ")
        if scheme.lower() != "basic" or not encoded:
            raise BadCredentials("the request has no basic-auth credentials")
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise BadCredentials("the basic-auth credentials are not base64") from None
        username, colon, password = decoded.partition(b":")
        user_ok = hmac.compare_digest(username, self._username)
        password_ok = hmac.compare_digest(password, self._password)
        if not (colon and user_ok and password_ok):
            raise BadCredentials("the basic-auth credentials do not match [webhooks.postmark]")

    async def receive(
        self, headers: Mapping[str, str], body: bytes, *, now: datetime | None = None
    ) -> tuple[Event, ...]:
        self.verify(headers)
        payload = load_json(body)
        return tuple(postmark_events(mapping(payload)))


def postmark_events(record: Mapping[str, Any]) -> list[Event]:
    """The events of one Postmark webhook record."""
    record_type = text(record.get("RecordType"))
    origin = Origin(
        provider=PROVIDER,
        provider_message_id=text(record.get("MessageID")),
        message_id=None,
        email_id=email_id_of(mapping(record.get("Metadata")).get(EMAIL_ID_TAG)),
    )
    if record_type in {"Bounce", "SpamComplaint"}:
        return _bounce(record, record_type, origin)
    if record_type == "Delivery":
        return _delivery(record, origin)
    if record_type == "SubscriptionChange":
        return _subscription_change(record, origin)
    return []


def _bounce(record: Mapping[str, Any], record_type: str, origin: Origin) -> list[Event]:
    """A Bounce or SpamComplaint record: its `Type` decides what it is."""
    kind = text(record.get("Type")) or record_type
    mapped = _BOUNCES.get(kind)
    recipient = text(record.get("Email"))
    if mapped is None or recipient is None:
        return []
    event_type, subtype, sender_side = mapped
    details = clean_text(record.get("Details")) or clean_text(record.get("Description"))
    found = classify(None, details)
    return [
        Event(
            type=event_type,
            recipient=recipient,
            subtype=subtype,
            status=found.status if event_type is EventType.BOUNCED else None,
            diagnostic=details,
            sender_side=event_type is EventType.BOUNCED and (sender_side or found.sender_side),
            occurred_at=iso_time(record.get("BouncedAt")),
            provider_event_id=f"bounce/{record.get('ID')}",
            feedback_type="abuse" if event_type is EventType.COMPLAINED else None,
            **origin,
        )
    ]


def _delivery(record: Mapping[str, Any], origin: Origin) -> list[Event]:
    recipient = text(record.get("Recipient"))
    if recipient is None:
        return []
    return [
        Event(
            type=EventType.DELIVERED,
            recipient=recipient,
            diagnostic=clean_text(record.get("Details")),
            occurred_at=iso_time(record.get("DeliveredAt")),
            provider_event_id=f"delivery/{origin['provider_message_id']}/{recipient}",
            **origin,
        )
    ]


def _subscription_change(record: Mapping[str, Any], origin: Origin) -> list[Event]:
    """A recipient's own unsubscribe; bounce and complaint suppressions arrive as their own
    records."""
    recipient = text(record.get("Recipient"))
    manual = record.get("SuppressionReason") == "ManualSuppression"
    if recipient is None or record.get("SuppressSending") is not True or not manual:
        return []
    return [
        Event(
            type=EventType.UNSUBSCRIBED,
            recipient=recipient,
            occurred_at=iso_time(record.get("ChangedAt")),
            provider_event_id=(
                f"subscription/{origin['provider_message_id']}/{recipient}/"
                f"{record.get('ChangedAt')}"
            ),
            **origin,
        )
    ]
