"""SES notifications → events: both payload shapes, `notificationType` (identity
notifications) and `eventType` (configuration-set event publishing). The SNS envelope around
them is verified by mailq.bounces.webhooks.ses."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mailq.bounces.classify import Classification, classify
from mailq.bounces.events import Event, EventType, Subtype, clean_text, normalize_message_id
from mailq.bounces.webhooks.common import (
    EMAIL_ID_TAG,
    Origin,
    email_id_of,
    iso_time,
    items,
    mapping,
    text,
)

PROVIDER = "ses"

_BOUNCE_TYPES = {"Permanent": Subtype.HARD, "Transient": Subtype.SOFT}
_SENDER_SIDE_SUBTYPES = frozenset({"ContentRejected", "AttachmentRejected", "MessageTooLarge"})
# DeliveryDelay types about the sender (SES itself, our IP, our reputation), not the recipient.
_SENDER_SIDE_DELAYS = frozenset({"InternalFailure", "SpamDetected", "IPFailure", "SendingDeferral"})


def ses_events(payload: Mapping[str, Any], *, sns_message_id: str | None = None) -> list[Event]:
    """The events of one SES notification (`notificationType`) or event record (`eventType`).
    Types without a recipient outcome (Send, Reject, Open, Click, Rendering Failure, the
    subscription test message) give none."""
    kind = text(payload.get("notificationType")) or text(payload.get("eventType"))
    mail = mapping(payload.get("mail"))
    common = Origin(
        provider=PROVIDER,
        provider_message_id=text(mail.get("messageId")),
        message_id=_our_message_id(mail),
        email_id=email_id_of(mapping(mail.get("tags")).get(EMAIL_ID_TAG)),
    )
    base = sns_message_id or text(mail.get("messageId")) or "-"
    if kind == "Bounce":
        return _bounces(mapping(payload.get("bounce")), base, common)
    if kind == "Complaint":
        complaint = mapping(payload.get("complaint"))
        feedback = text(complaint.get("feedbackId")) or base
        return [
            Event(
                type=EventType.COMPLAINED,
                recipient=address,
                occurred_at=iso_time(complaint.get("timestamp")),
                feedback_type=text(complaint.get("complaintFeedbackType")),
                provider_event_id=f"{feedback}/{address}",
                **common,
            )
            for address in _addresses(complaint.get("complainedRecipients"))
        ]
    if kind == "Delivery":
        delivery = mapping(payload.get("delivery"))
        return [
            Event(
                type=EventType.DELIVERED,
                recipient=address,
                diagnostic=clean_text(delivery.get("smtpResponse")),
                occurred_at=iso_time(delivery.get("timestamp")),
                provider_event_id=f"{base}/{address}/delivered",
                **common,
            )
            for address in _recipient_list(delivery.get("recipients"))
        ]
    if kind == "DeliveryDelay":
        return _delays(mapping(payload.get("deliveryDelay")), base, common)
    if kind == "Subscription":
        subscription = mapping(payload.get("subscription"))
        if mapping(subscription.get("newTopicPreferences")).get("unsubscribeAll") is not True:
            return []
        return [
            Event(
                type=EventType.UNSUBSCRIBED,
                recipient=address,
                occurred_at=iso_time(subscription.get("timestamp")),
                provider_event_id=f"{base}/{address}/unsubscribed",
                **common,
            )
            for address in _recipient_list(mail.get("destination"))
        ]
    return []


def _bounces(bounce: Mapping[str, Any], base: str, common: Origin) -> list[Event]:
    subtype = _BOUNCE_TYPES.get(str(bounce.get("bounceType")), Subtype.SOFT)
    ses_subtype = text(bounce.get("bounceSubType"))
    feedback = text(bounce.get("feedbackId")) or base
    return [
        Event(
            type=EventType.BOUNCED,
            recipient=address,
            subtype=subtype,
            status=found.status,
            diagnostic=diagnostic or ses_subtype,
            sender_side=found.sender_side or ses_subtype in _SENDER_SIDE_SUBTYPES,
            occurred_at=iso_time(bounce.get("timestamp")),
            provider_event_id=f"{feedback}/{address}",
            **common,
        )
        for address, diagnostic, found in _per_recipient(bounce.get("bouncedRecipients"))
    ]


def _delays(delay: Mapping[str, Any], base: str, common: Origin) -> list[Event]:
    delay_type = text(delay.get("delayType"))
    return [
        Event(
            type=EventType.DEFERRED,
            recipient=address,
            status=found.status,
            diagnostic=diagnostic or delay_type,
            sender_side=found.sender_side or delay_type in _SENDER_SIDE_DELAYS,
            occurred_at=iso_time(delay.get("timestamp")),
            provider_event_id=f"{base}/{address}/deferred",
            **common,
        )
        for address, diagnostic, found in _per_recipient(delay.get("delayedRecipients"))
    ]


def _per_recipient(entries: object) -> list[tuple[str, str | None, Classification]]:
    """Each recipient entry of a bounce or a delay that names an address: the address, its
    diagnostic and what its status and diagnostic say."""
    out: list[tuple[str, str | None, Classification]] = []
    for entry in items(entries):
        fields = mapping(entry)
        address = text(fields.get("emailAddress"))
        if address is None:
            continue
        diagnostic = clean_text(fields.get("diagnosticCode"))
        out.append((address, diagnostic, classify(text(fields.get("status")), diagnostic)))
    return out


def _our_message_id(mail: Mapping[str, Any]) -> str | None:
    found = normalize_message_id(mapping(mail.get("commonHeaders")).get("messageId"))
    if found:
        return found
    for entry in items(mail.get("headers")):
        if str(mapping(entry).get("name", "")).lower() == "message-id":
            return normalize_message_id(mapping(entry).get("value"))
    return None


def _addresses(entries: object) -> list[str]:
    return [
        address
        for entry in items(entries)
        if (address := text(mapping(entry).get("emailAddress"))) is not None
    ]


def _recipient_list(entries: object) -> list[str]:
    return [address for entry in items(entries) if (address := text(entry)) is not None]
