"""The normalised delivery event: what a DSN, a feedback report or a provider's webhook says
happened to one email for one recipient.

Every source (mailq.bounces.dsn for inbound mail, mailq.bounces.webhooks.* for the ESPs) turns
its own vocabulary into `Event` values; the recorder matches them to an email (by `email_id`
from a VERP token or a provider tag, by our `message_id`, or by the `provider_message_id`
recorded at send) and applies the policy. An event is a value: it knows nothing of the
database.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class EventType(StrEnum):
    DELIVERED = "delivered"
    BOUNCED = "bounced"
    COMPLAINED = "complained"
    UNSUBSCRIBED = "unsubscribed"
    DEFERRED = "deferred"


class Subtype(StrEnum):
    """How lasting a bounce is: `hard` (the address will never work), `soft` (it may later)."""

    HARD = "hard"
    SOFT = "soft"


# Provider names of the inbound sources (the webhooks use their own: "ses", "postmark", ...).
PROVIDER_DSN = "dsn"  # a delivery status notification, RFC 3464 or a human-text bounce
PROVIDER_ARF = "arf"  # a feedback report (complaint), RFC 5965

_MESSAGE_ID = re.compile(r"<?\s*([^<>\s]+@[^<>\s]+?)\s*>?$")


@dataclass(frozen=True, slots=True)
class Event:
    """One thing that happened to one email for one recipient.

    `subtype` is set for `bounced` only. `sender_side` marks a refusal about the sender or the
    message (authentication, reputation, throttling, content: 5.7.26, 5.7.515, 4.7.x ...), not
    about the recipient: it must never suppress the recipient, but counts toward the breakers.
    `status` is the RFC 3463 enhanced status code (`5.1.1`), `diagnostic` the remote server's
    text. `occurred_at` is timezone-aware (None when the source gives no time).
    `provider_event_id` identifies the event at its source so that a second delivery of the
    same event (a webhook retry, a DSN sent twice) is recorded once; see `dedup_key`.
    """

    type: EventType
    provider: str
    recipient: str | None = None
    subtype: Subtype | None = None
    status: str | None = None
    diagnostic: str | None = None
    sender_side: bool = False
    occurred_at: datetime | None = None
    provider_message_id: str | None = None
    message_id: str | None = None
    email_id: int | None = None
    provider_event_id: str | None = None
    feedback_type: str | None = None

    def __post_init__(self) -> None:
        if (self.subtype is not None) != (self.type is EventType.BOUNCED):
            raise ValueError(f"a {self.type} event has a subtype only if it is a bounce")
        if self.occurred_at is not None and self.occurred_at.utcoffset() is None:
            raise ValueError("occurred_at must be timezone-aware")
        if self.email_id is not None and self.email_id <= 0:
            raise ValueError("email_id must be positive")

    @property
    def dedup_key(self) -> str:
        """A stable key for "the same event": the provider and its event id when it gives one,
        else a digest of what the event says."""
        if self.provider_event_id:
            basis = f"{self.provider}\0{self.provider_event_id}"
        else:
            basis = "\0".join(
                str(part or "")
                for part in (
                    self.provider,
                    self.type,
                    self.recipient.lower() if self.recipient else None,
                    self.email_id,
                    self.message_id,
                    self.provider_message_id,
                    self.status,
                    self.occurred_at.isoformat() if self.occurred_at else None,
                )
            )
        return hashlib.sha256(basis.encode("utf-8")).hexdigest()


def normalize_message_id(value: object) -> str | None:
    """A Message-ID in its `<left@right>` form, or None when `value` is not one."""
    if not isinstance(value, str):
        return None
    match = _MESSAGE_ID.match(value.strip())
    return f"<{match.group(1)}>" if match else None


def clean_text(value: object, limit: int = 1000) -> str | None:
    """A diagnostic text on one line (folding and control characters removed), at most
    `limit` characters; None when empty or not text."""
    if not isinstance(value, str):
        return None
    text = " ".join(value.split())
    text = "".join(ch for ch in text if ch.isprintable())
    return text[:limit] or None
