"""Reading feedback reports (ARF, RFC 5965): a recipient pressed "this is spam".

A report is `multipart/report; report-type=feedback-report` with a human part, a
`message/feedback-report` part (`Feedback-Type`, `Original-Mail-From`, `Original-Rcpt-To`,
`Arrival-Date`, ...) and the original message or its headers. Mailbox providers redact the
recipient more and more (Yahoo, Microsoft JMRP put "redacted" in `To`), so the email is found
through `Original-Mail-From` (our VERP envelope sender, when the report carries it) or our
Message-ID in the returned original; `Original-Rcpt-To` names the recipient when present.

Feedback types `abuse`, `fraud` and `other` (and a missing one) are complaints; `not-spam`,
`auth-failure` (DMARC/DKIM failure reports, RFC 6591) and `virus` carry no event: they are not
a recipient's wish.
"""

from __future__ import annotations

from email.message import Message

from mailq.bounces.events import PROVIDER_ARF, Event, EventType, clean_text
from mailq.bounces.parts import (
    address_of,
    first_part,
    header,
    header_addresses,
    original_headers,
    original_message_id,
    parse_date,
    parse_headers,
    text_of,
    verp_lookup,
)
from mailq.bounces.report import InboundReport, ReportKind
from mailq.bounces.verp import Verp

COMPLAINT_TYPES = frozenset({"abuse", "fraud", "other"})
_FEEDBACK_PART = frozenset({"message/feedback-report"})
MAX_RECIPIENTS = 100


def feedback_fields(message: Message) -> Message | None:
    """The fields of the message/feedback-report part, as a header block."""
    part = first_part(message, _FEEDBACK_PART)
    if part is None:
        return None
    payload = part.get_payload()
    # The email package parses every message/* but delivery-status as a nested message.
    if isinstance(payload, list) and payload and isinstance(payload[0], Message):
        return payload[0]
    return parse_headers(text_of(part))


def parse_feedback(
    message: Message,
    *,
    verp: Verp | None,
    email_id: int | None,
    forged: bool,
    report_id: str | None,
    dedup_base: str,
) -> InboundReport:
    """The complaint events of a feedback report (see the module's docstring)."""
    fields = feedback_fields(message)
    feedback_type = (header(fields, "Feedback-Type") or "abuse").lower() if fields else "abuse"
    original = original_headers(message)
    if email_id is None:
        candidates: list[str] = []
        if fields is not None:
            candidates += header_addresses(fields, ("Original-Mail-From",))
        if original is not None:
            candidates += header_addresses(original, ("Return-Path",))
        email_id, seen_forged = verp_lookup(verp, candidates)
        forged = forged or seen_forged
    message_id = original_message_id(message)
    recipients = _recipients(fields, original)
    occurred = None
    if fields is not None:
        occurred = parse_date(header(fields, "Arrival-Date") or header(fields, "Received-Date"))
    occurred = occurred or parse_date(header(message, "Date"))
    events: list[Event] = []
    if feedback_type in COMPLAINT_TYPES:
        targets: list[str | None] = [*recipients[:MAX_RECIPIENTS]] or [None]
        for recipient in targets:
            if recipient is None and email_id is None and message_id is None:
                break  # nothing to match it to
            events.append(
                Event(
                    type=EventType.COMPLAINED,
                    provider=PROVIDER_ARF,
                    recipient=recipient,
                    occurred_at=occurred,
                    message_id=message_id,
                    email_id=email_id,
                    provider_event_id=f"{dedup_base}/{recipient or 0}/complained",
                    feedback_type=feedback_type,
                    diagnostic=clean_text(header(fields, "User-Agent")) if fields else None,
                )
            )
    return InboundReport(
        kind=ReportKind.FEEDBACK,
        events=tuple(events),
        email_id=email_id,
        original_message_id=message_id,
        report_message_id=report_id,
        forged_verp=forged,
        feedback_type=feedback_type,
    )


def _recipients(fields: Message | None, original: Message | None) -> list[str]:
    """The complaining recipients: `Original-Rcpt-To` / `Removal-Recipient`, else the
    original's single `To` unless redacted."""
    recipients: list[str] = []
    if fields is not None:
        for name in ("Original-Rcpt-To", "Removal-Recipient"):
            for value in _all(fields, name):
                found = address_of(value)
                if found and found.lower() not in {r.lower() for r in recipients}:
                    recipients.append(found)
    if not recipients and original is not None:
        to = [addr for addr in header_addresses(original, ("To",)) if _plausible(addr)]
        recipients = to[:1] if len(to) == 1 else []
    return recipients


def _all(block: Message, name: str) -> list[str]:
    try:
        return [str(value) for value in block.get_all(name, [])]
    except Exception:  # a malformed field: skip it
        return []


def _plausible(address: str) -> bool:
    local, _, domain = address.rpartition("@")
    return bool(local) and "." in domain and "redacted" not in address.lower()
