"""SendGrid Event Webhook (`POST /v1/webhooks/sendgrid`), with signature verification on.

SendGrid signs `timestamp + body` (the raw bytes) with ECDSA P-256 / SHA-256 and sends the
base64 DER signature in `X-Twilio-Email-Event-Webhook-Signature` and the timestamp in
`X-Twilio-Email-Event-Webhook-Timestamp`; the verification key is shown in the SendGrid console
as base64 DER (SubjectPublicKeyInfo), which is what `[webhooks.sendgrid] public_key` takes.
The timestamp must be within the window.

The body is a JSON array of events: `delivered`; `bounce` (`type` bounce → hard, blocked →
soft; `bounce_classification` Reputation, Content, Frequency or Volume → sender-side);
`deferred`; `spamreport`; `unsubscribe` and `group_unsubscribe`; `dropped` for SendGrid's own
suppressions (Bounced Address, Spam Reporting Address, Unsubscribed Address) is reported as
the event it stands for. Custom argument `mailq_email_id`, when the sender set it, names the
email (SendGrid puts custom arguments at the top level of each event).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key

from mailq.bounces.classify import classify
from mailq.bounces.errors import BadSignature
from mailq.bounces.events import Event, EventType, Subtype, clean_text, normalize_message_id
from mailq.bounces.webhooks.common import (
    EMAIL_ID_TAG,
    SIGNATURE_TOLERANCE_S,
    Origin,
    check_window,
    email_id_of,
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
    unix_time,
)
from mailq.errors import ConfigError

PROVIDER = "sendgrid"
SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
_SENDER_SIDE_CLASSES = frozenset({"Reputation", "Content", "Frequency or Volume"})
_DROPPED = {
    "Bounced Address": EventType.BOUNCED,
    "Spam Reporting Address": EventType.COMPLAINED,
    "Unsubscribed Address": EventType.UNSUBSCRIBED,
}
_SG_MESSAGE_ID = re.compile(r"^(.+?)\.(?:filter|recvd)")


def load_public_key(value: str) -> ec.EllipticCurvePublicKey:
    """The verification key from its base64 DER form; ConfigError when it is not one."""
    try:
        key = load_der_public_key(base64.b64decode(value.strip(), validate=True))
    except (binascii.Error, ValueError, UnsupportedAlgorithm):
        raise ConfigError(
            "[webhooks.sendgrid] public_key: not a base64 DER public key (copy the "
            "verification key shown in SendGrid's Mail Settings → Event Webhook)"
        ) from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ConfigError("[webhooks.sendgrid] public_key: not an elliptic-curve (ECDSA) key")
    return key


class SendgridWebhook:
    """Verifies SendGrid's ECDSA signature and maps its events."""

    provider = PROVIDER

    def __init__(self, public_key: str, *, tolerance_s: float = SIGNATURE_TOLERANCE_S) -> None:
        self._key = load_public_key(public_key)
        self._tolerance_s = tolerance_s

    @classmethod
    def from_section(cls, section: Mapping[str, object]) -> SendgridWebhook:
        """From `[webhooks.sendgrid]`: `public_key`, optional `tolerance_s`."""
        return cls(
            section_text(section, PROVIDER, "public_key"),
            tolerance_s=section_seconds(section, PROVIDER, "tolerance_s", SIGNATURE_TOLERANCE_S),
        )

    def verify(self, headers: Mapping[str, str], body: bytes, *, now: datetime | None) -> None:
        """Check the signature over `timestamp + body`, then the timestamp's window."""
        hdrs = lowered(headers)
        signature_text = required_header(hdrs, SIGNATURE_HEADER)
        timestamp = required_header(hdrs, TIMESTAMP_HEADER)
        try:
            signature = base64.b64decode(signature_text, validate=True)
        except (binascii.Error, ValueError):
            raise BadSignature("the SendGrid signature is not base64") from None
        try:
            self._key.verify(signature, timestamp.encode("utf-8") + body, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            raise BadSignature("the SendGrid signature does not match the body") from None
        check_window(parse_unix(timestamp), now_seconds(now), self._tolerance_s)

    async def receive(
        self, headers: Mapping[str, str], body: bytes, *, now: datetime | None = None
    ) -> tuple[Event, ...]:
        self.verify(headers, body, now=now)
        events: list[Event] = []
        for entry in items(load_json(body)):
            events.extend(sendgrid_events(mapping(entry)))
        return tuple(events)


def sendgrid_events(entry: Mapping[str, Any]) -> list[Event]:
    """The events of one SendGrid event object."""
    kind = text(entry.get("event"))
    recipient = text(entry.get("email"))
    if kind is None or recipient is None:
        return []
    sg_id = text(entry.get("sg_message_id"))
    if sg_id is not None:
        match = _SG_MESSAGE_ID.match(sg_id)
        sg_id = match.group(1) if match else sg_id
    origin = Origin(
        provider=PROVIDER,
        provider_message_id=sg_id,
        message_id=normalize_message_id(entry.get("smtp-id")),
        email_id=email_id_of(entry.get(EMAIL_ID_TAG)),
    )
    common: dict[str, Any] = {
        "recipient": recipient,
        "occurred_at": unix_time(entry.get("timestamp")),
        "provider_event_id": text(entry.get("sg_event_id")),
    }
    reason = clean_text(entry.get("reason")) or clean_text(entry.get("response"))
    if kind == "delivered":
        return [Event(type=EventType.DELIVERED, diagnostic=reason, **common, **origin)]
    if kind == "spamreport":
        return [Event(type=EventType.COMPLAINED, feedback_type="abuse", **common, **origin)]
    if kind in {"unsubscribe", "group_unsubscribe"}:
        return [Event(type=EventType.UNSUBSCRIBED, **common, **origin)]
    if kind == "dropped":
        mapped = _DROPPED.get(text(entry.get("reason")) or "")
        if mapped is None:
            return []
        subtype = Subtype.HARD if mapped is EventType.BOUNCED else None
        return [Event(type=mapped, subtype=subtype, diagnostic=reason, **common, **origin)]
    if kind not in {"bounce", "deferred"}:
        return []  # processed, open, click, group_resubscribe ...
    found = classify(text(entry.get("status")), reason)
    sender_side = found.sender_side or entry.get("bounce_classification") in _SENDER_SIDE_CLASSES
    if kind == "deferred":
        event_type, subtype = EventType.DEFERRED, None
    else:
        event_type = EventType.BOUNCED
        subtype = Subtype.SOFT if entry.get("type") == "blocked" else found.subtype
        if entry.get("type") == "bounce" and found.status is None:
            subtype = Subtype.HARD  # SendGrid: "bounce" is a permanent refusal
    return [
        Event(
            type=event_type,
            subtype=subtype,
            status=found.status,
            diagnostic=reason,
            sender_side=sender_side,
            **common,
            **origin,
        )
    ]
