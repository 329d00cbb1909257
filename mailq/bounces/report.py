"""What an inbound message turned out to be, and the events it carries."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from mailq.bounces.events import Event


class ReportKind(StrEnum):
    DSN = "dsn"  # RFC 3464 delivery status notification
    FEEDBACK = "feedback"  # RFC 5965 feedback report (ARF)
    TEXT_BOUNCE = "text-bounce"  # a bounce in human text only
    AUTOREPLY = "autoreply"  # out of office and the like: no events
    UNRECOGNISED = "unrecognised"  # none of the above: no events


@dataclass(frozen=True, slots=True)
class InboundReport:
    """One inbound message, read. `email_id` comes from a valid VERP token (None without
    one); `original_message_id` is the Message-ID of the returned original (ours, when the
    message is about mail we sent); `report_message_id` is the report's own Message-ID;
    `forged_verp` tells that a VERP-shaped address with a bad signature was seen;
    `feedback_type` is an ARF report's Feedback-Type (`abuse`, `not-spam`, ...)."""

    kind: ReportKind
    events: tuple[Event, ...] = ()
    email_id: int | None = None
    original_message_id: str | None = None
    report_message_id: str | None = None
    forged_verp: bool = False
    feedback_type: str | None = None
