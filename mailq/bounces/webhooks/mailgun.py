"""Mailgun webhooks (`POST /v1/webhooks/mailgun`, the JSON webhooks).

Each request carries `signature: {timestamp, token, signature}`: the hex HMAC-SHA256 of
`timestamp + token` keyed with the webhook signing key. Verification checks the HMAC (constant
time), then that the timestamp is within the window, then that the token was not used before
(Mailgun's advice against replays). The token memory is a `ReplayGuard`: in-process by default;
pass a shared one (a database table) to hold across several service processes.

`event-data.event`: `delivered`; `failed` with `severity` permanent (a bounce, hard) or
temporary (deferred; Mailgun retries); `complained`; `unsubscribed`. A permanent failure with
`reason` `suppress-bounce`, `suppress-complaint` or `suppress-unsubscribe` (Mailgun's own list
refused the send) is reported as the bounce, complaint or unsubscribe it stands for; `espblock`
is sender-side. `user-variables.mailq_email_id`, when the sender set it, names the email.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from mailq.bounces.classify import classify
from mailq.bounces.errors import (
    BadSignature,
    InvalidPayload,
    MalformedWebhook,
    ReplayedWebhook,
)
from mailq.bounces.events import Event, EventType, Subtype, clean_text, normalize_message_id
from mailq.bounces.webhooks.common import (
    EMAIL_ID_TAG,
    SIGNATURE_TOLERANCE_S,
    MemoryReplayGuard,
    Origin,
    ReplayGuard,
    check_window,
    email_id_of,
    load_json,
    mapping,
    now_seconds,
    parse_unix,
    section_seconds,
    section_text,
    text,
    unix_time,
)

PROVIDER = "mailgun"
_SUPPRESSED = {
    "suppress-bounce": EventType.BOUNCED,
    "suppress-complaint": EventType.COMPLAINED,
    "suppress-unsubscribe": EventType.UNSUBSCRIBED,
}


class MailgunWebhook:
    """Verifies Mailgun's HMAC signature and maps `event-data` to events."""

    provider = PROVIDER

    def __init__(
        self,
        signing_key: str,
        *,
        tolerance_s: float = SIGNATURE_TOLERANCE_S,
        replay_guard: ReplayGuard | None = None,
    ) -> None:
        self._key = signing_key.encode("utf-8")
        self._tolerance_s = tolerance_s
        self._replays = replay_guard if replay_guard is not None else MemoryReplayGuard()

    @classmethod
    def from_section(
        cls, section: Mapping[str, object], *, replay_guard: ReplayGuard | None = None
    ) -> MailgunWebhook:
        """From `[webhooks.mailgun]`: `signing_key`, optional `tolerance_s`."""
        return cls(
            section_text(section, PROVIDER, "signing_key"),
            tolerance_s=section_seconds(section, PROVIDER, "tolerance_s", SIGNATURE_TOLERANCE_S),
            replay_guard=replay_guard,
        )

    def verify(self, payload: Mapping[str, Any], *, now: datetime | None = None) -> None:
        """Check `payload["signature"]` (see the module docstring)."""
        signed = mapping(payload.get("signature"))
        timestamp, token, signature = (
            signed.get("timestamp"),
            signed.get("token"),
            signed.get("signature"),
        )
        if not all(isinstance(value, str | int) for value in (timestamp, token, signature)):
            raise MalformedWebhook("the request has no Mailgun signature object")
        expected = hmac.new(self._key, f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, str(signature).lower()):
            raise BadSignature("the Mailgun signature does not match the signing key")
        signed_at = parse_unix(timestamp)
        current = now_seconds(now)
        check_window(signed_at, current, self._tolerance_s)
        if self._replays.seen(f"mailgun:{token}", expires_at=signed_at + self._tolerance_s):
            raise ReplayedWebhook("the Mailgun token was already used")

    async def receive(
        self, headers: Mapping[str, str], body: bytes, *, now: datetime | None = None
    ) -> tuple[Event, ...]:
        try:
            payload = load_json(body)
        except InvalidPayload:  # unverifiable, so a rejection rather than a bad payload
            raise MalformedWebhook("the body is not Mailgun's JSON") from None
        self.verify(mapping(payload), now=now)
        return tuple(mailgun_events(mapping(mapping(payload).get("event-data"))))


def mailgun_events(data: Mapping[str, Any]) -> list[Event]:
    """The events of one Mailgun `event-data` object."""
    event = text(data.get("event"))
    recipient = text(data.get("recipient"))
    if event is None or recipient is None:
        return []
    headers = mapping(mapping(data.get("message")).get("headers"))
    message_id = normalize_message_id(headers.get("message-id"))
    origin = Origin(
        provider=PROVIDER,
        provider_message_id=message_id,
        message_id=message_id,
        email_id=email_id_of(mapping(data.get("user-variables")).get(EMAIL_ID_TAG)),
    )
    event_id = text(data.get("id"))
    occurred = unix_time(data.get("timestamp"))
    if event in {"complained", "unsubscribed"}:
        event_type = EventType.COMPLAINED if event == "complained" else EventType.UNSUBSCRIBED
        return [
            Event(
                type=event_type,
                recipient=recipient,
                occurred_at=occurred,
                provider_event_id=event_id,
                **origin,
            )
        ]
    if event == "delivered":
        status = mapping(data.get("delivery-status"))
        return [
            Event(
                type=EventType.DELIVERED,
                recipient=recipient,
                diagnostic=_diagnostic(status),
                occurred_at=occurred,
                provider_event_id=event_id,
                **origin,
            )
        ]
    if event != "failed":
        return []  # accepted, opened, clicked, stored ...
    return [_failure(data, recipient, occurred, event_id, origin)]


def _diagnostic(status: Mapping[str, Any]) -> str | None:
    code = status.get("code")
    reply = clean_text(status.get("message")) or clean_text(status.get("description"))
    return clean_text(f"{code} {reply}" if code and reply else reply)


def _failure(
    data: Mapping[str, Any],
    recipient: str,
    occurred: datetime | None,
    event_id: str | None,
    origin: Origin,
) -> Event:
    """A `failed` event: a bounce, a deferral, or one of Mailgun's own suppressions."""
    status = mapping(data.get("delivery-status"))
    diagnostic = _diagnostic(status)
    reason = text(data.get("reason")) or ""
    found = classify(text(status.get("enhanced-code")), diagnostic)
    sender_side = found.sender_side or reason == "espblock"
    subtype: Subtype | None
    if data.get("severity") == "temporary":
        event_type, subtype = EventType.DEFERRED, None
    elif reason in _SUPPRESSED:
        event_type = _SUPPRESSED[reason]
        subtype = Subtype.HARD if event_type is EventType.BOUNCED else None
    else:
        # Mailgun calls it permanent; an explicit soft code (5.2.2 mailbox full) still wins.
        explicit_soft = found.status is not None and found.subtype is Subtype.SOFT
        event_type, subtype = EventType.BOUNCED, Subtype.SOFT if explicit_soft else Subtype.HARD
    bounce_like = event_type in {EventType.BOUNCED, EventType.DEFERRED}
    return Event(
        type=event_type,
        recipient=recipient,
        subtype=subtype,
        status=found.status if bounce_like else None,
        diagnostic=diagnostic,
        sender_side=sender_side and bounce_like,
        occurred_at=occurred,
        provider_event_id=event_id,
        **origin,
    )
