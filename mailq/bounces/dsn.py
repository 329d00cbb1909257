"""Reading inbound bounce mail: delivery status notifications, feedback reports, and the bounces
that follow no standard.

`parse_report(raw)` reads one message with the standard library's `email` package (it parses
`multipart/report` and splits `message/delivery-status` into its header blocks) and says what it
is and which events it carries:

- RFC 3464 DSNs (`multipart/report; report-type=delivery-status`): one event per recipient block,
  from `Action` (failed → bounced, delayed → deferred, delivered/relayed/expanded → delivered),
  `Status`, `Diagnostic-Code`, `Original-Recipient`/`Final-Recipient`; our Message-ID from the
  returned `message/rfc822` or `text/rfc822-headers` part. Postfix, Exim 4 (with DSN), Gmail,
  Microsoft 365 and most MTAs send these.
- RFC 5965 feedback reports (`report-type=feedback-report`, mailq.bounces.arf): complaints.
- Human-text bounces (qmail, old Exim, some appliances): recognised by a MAILER-DAEMON or
  postmaster sender or a bounce subject; the status code and the recipient are read from the
  text, our Message-ID from the copy of the original after it.
- Auto-replies (out of office, RFC 3834 `Auto-Submitted: auto-replied`) and anything else carry
  no events.

The email is named by a VERP address (the envelope recipient given by the SMTP server, or the
`Delivered-To`/`X-Original-To`/`To` headers a pipe transport leaves), by the DSN's
`Original-Envelope-Id` when it holds a VERP token or Postfix's `X-Postfix-Sender`, or else by
our Message-ID of the original.
Forged VERP tokens are passed over (and reported in `forged_verp`). The parser never raises on
hostile input: what it cannot read it leaves out.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from email import policy
from email.message import Message
from email.parser import BytesParser
from email.utils import getaddresses

from mailq.bounces import arf
from mailq.bounces.classify import classify, find_status
from mailq.bounces.errors import ForgedVerpToken
from mailq.bounces.events import PROVIDER_DSN, Event, EventType, clean_text, normalize_message_id
from mailq.bounces.parts import (
    address_of,
    first_part,
    header,
    header_addresses,
    human_text,
    message_id_in_text,
    original_headers,
    parse_date,
    parse_headers,
    report_type,
    strip_type,
    text_of,
    verp_lookup,
)
from mailq.bounces.report import InboundReport, ReportKind
from mailq.bounces.verp import Verp

MAX_RECIPIENT_BLOCKS = 100  # per-recipient DSN blocks read from one report

_ACTIONS = {
    "failed": EventType.BOUNCED,
    "delayed": EventType.DEFERRED,
    "delivered": EventType.DELIVERED,
    "relayed": EventType.DELIVERED,
    "expanded": EventType.DELIVERED,
}
_STATUS_TYPES = frozenset({"message/delivery-status", "message/global-delivery-status"})
_FEEDBACK_TYPES = frozenset({"message/feedback-report"})
_VERP_HEADERS = ("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "To")

_DAEMON = re.compile(r"^(mailer-daemon|mail-daemon|mailerdaemon|postmaster|mdaemon)$", re.I)
_DAEMON_NAME = re.compile(r"mail delivery|mailer.?daemon|postmaster|delivery subsystem", re.I)
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|delivery (status notification|failure|has failed|failed|problem|notification)|"
    r"failure notice|returned mail|mail delivery failed|could not be delivered|non.?delivery|"
    r"nondeliverable|delivery warning|delayed mail|unzustellbar|non remis|no entregado",
    re.I,
)
_AUTOREPLY_SUBJECT = re.compile(
    r"^\s*(auto(matic)?[ -]?(reply|response|antwort)|out of (the )?office|auto:|away from|"
    r"abwesenheit|r[ée]ponse automatique|absence)",
    re.I,
)
_COPY_MARKER = re.compile(
    r"^[ \t>-]*(this is a copy of the message|below this line is a copy of the message|"
    r"original message( headers| follows)?|the (original )?message headers? follows?|"
    r"a copy of the original message|included is a copy of the message|"
    r"the header of the original message|original message header)",
    re.I | re.M,
)
_DELAY_WORDS = re.compile(
    r"delayed|will (continue to )?(be )?retr(y|ied)|still (trying|being retried)|"
    r"not yet been delivered|has not been delivered yet|warning: message",
    re.I,
)
_QMAIL_RECIPIENT = re.compile(r"^<([^<>\s@]+@[^<>\s]+)>:\s*$", re.M)
_FAILED_LIST = re.compile(r"following (address(\(es\))?|recipients?)[^\n]*(failed|:)", re.I)
_INDENTED_ADDRESS = re.compile(r"^[ \t]+<?([^<>\s@:]+@[^<>\s:]+?)>?:?\s*$", re.M)
_ANY_ADDRESS = re.compile(r"<?([A-Za-z0-9._%+=-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,})>?")


def parse_report(
    raw: bytes,
    *,
    verp: Verp | None = None,
    envelope_recipients: Sequence[str] = (),
) -> InboundReport:
    """Read one inbound message (`raw` is the whole message, headers and body).

    `envelope_recipients` are the RCPT TO addresses when the message came over SMTP; `verp`
    (None when MAILQ_BOUNCE_DOMAIN is unset) reads the VERP tokens among them and in the
    headers.
    """
    message = BytesParser(policy=policy.default).parsebytes(raw)
    report_id = normalize_message_id(header(message, "Message-ID"))
    dedup_base = report_id or "sha256:" + hashlib.sha256(raw).hexdigest()[:32]
    candidates = [*envelope_recipients, *header_addresses(message, _VERP_HEADERS)]
    email_id, forged = verp_lookup(verp, candidates)

    if report_type(message) == "feedback-report" or first_part(message, _FEEDBACK_TYPES):
        return arf.parse_feedback(
            message,
            verp=verp,
            email_id=email_id,
            forged=forged,
            report_id=report_id,
            dedup_base=dedup_base,
        )
    status_part = first_part(message, _STATUS_TYPES)
    if status_part is not None:
        return _parse_dsn(message, status_part, verp, email_id, forged, report_id, dedup_base)
    if _looks_like_bounce(message):
        return _parse_text_bounce(message, email_id, forged, report_id, dedup_base)
    kind = ReportKind.AUTOREPLY if _looks_like_autoreply(message) else ReportKind.UNRECOGNISED
    return InboundReport(
        kind=kind, email_id=email_id, report_message_id=report_id, forged_verp=forged
    )


# -- DSN (RFC 3464) -----------------------------------------------------------------------


def _parse_dsn(
    message: Message,
    status_part: Message,
    verp: Verp | None,
    email_id: int | None,
    forged: bool,
    report_id: str | None,
    dedup_base: str,
) -> InboundReport:
    blocks = _status_blocks(status_part)
    per_message = blocks[0] if blocks and not _is_recipient_block(blocks[0]) else None
    recipients = [block for block in blocks if _is_recipient_block(block)]
    if email_id is None and per_message is not None:
        email_id, forged = _envelope_email_id(per_message, verp, forged)
    original = original_headers(message)
    original_id = normalize_message_id(header(original, "Message-ID")) if original else None
    if original_id is None:
        original_id = message_id_in_text(human_text(message))
    arrival = parse_date(header(per_message, "Arrival-Date")) if per_message else None
    fallback_time = arrival or parse_date(header(message, "Date"))
    events: list[Event] = []
    for index, block in enumerate(recipients[:MAX_RECIPIENT_BLOCKS]):
        action = (header(block, "Action") or "").split()[0:1]
        event_type = _ACTIONS.get(action[0].lower()) if action else None
        if event_type is None:
            continue
        recipient = address_of(header(block, "Original-Recipient")) or address_of(
            header(block, "Final-Recipient")
        )
        diagnostic = strip_type(header(block, "Diagnostic-Code"))
        found = classify(header(block, "Status"), diagnostic)
        occurred = parse_date(header(block, "Last-Attempt-Date")) or fallback_time
        events.append(
            Event(
                type=event_type,
                provider=PROVIDER_DSN,
                recipient=recipient,
                subtype=found.subtype if event_type is EventType.BOUNCED else None,
                status=found.status,
                diagnostic=diagnostic,
                sender_side=found.sender_side and event_type is not EventType.DELIVERED,
                occurred_at=occurred,
                message_id=original_id,
                email_id=email_id,
                provider_event_id=f"{dedup_base}/{recipient or index}/{event_type}",
            )
        )
    return InboundReport(
        kind=ReportKind.DSN,
        events=tuple(events),
        email_id=email_id,
        original_message_id=original_id,
        report_message_id=report_id,
        forged_verp=forged,
    )


def _envelope_email_id(
    per_message: Message, verp: Verp | None, forged: bool
) -> tuple[int | None, bool]:
    """The email named by the DSN's per-message fields, and whether a forged token was seen."""
    # A DSN echoes the ENVID given at MAIL FROM (RFC 3461): a VERP token if mailq sent one.
    envid = strip_type(header(per_message, "Original-Envelope-Id"))
    if envid and verp is not None:
        try:
            return verp.read_token(envid), forged
        except ForgedVerpToken:
            forged = True
    # Postfix names the envelope sender of the bounced mail: our VERP address.
    sender = address_of(header(per_message, "X-Postfix-Sender"))
    email_id, seen_forged = verp_lookup(verp, [sender] if sender else [])
    return email_id, forged or seen_forged


def _status_blocks(part: Message) -> list[Message]:
    payload = part.get_payload()
    if isinstance(payload, list):
        return [block for block in payload if isinstance(block, Message)]
    # message/global-delivery-status, or a delivery-status the parser left as text.
    text = text_of(part).replace("\r\n", "\n")
    return [parse_headers(chunk) for chunk in re.split(r"\n\s*\n", text) if chunk.strip()]


def _is_recipient_block(block: Message) -> bool:
    return header(block, "Final-Recipient") is not None or header(block, "Action") is not None


# -- human-text bounces -------------------------------------------------------------------


def _looks_like_bounce(message: Message) -> bool:
    subject = header(message, "Subject") or ""
    sender = header(message, "From") or ""
    names = getaddresses([sender])
    daemon = any(
        _DAEMON.match(addr.partition("@")[0]) or _DAEMON_NAME.search(name) for name, addr in names
    )
    if daemon:
        return True
    return _BOUNCE_SUBJECT.search(subject) is not None and not _AUTOREPLY_SUBJECT.search(subject)


def _looks_like_autoreply(message: Message) -> bool:
    submitted = (header(message, "Auto-Submitted") or "").lower()
    if submitted.startswith("auto-replied") or header(message, "X-Autoreply") is not None:
        return True
    if header(message, "X-Autorespond") is not None:
        return True
    return _AUTOREPLY_SUBJECT.search(header(message, "Subject") or "") is not None


def _parse_text_bounce(
    message: Message,
    email_id: int | None,
    forged: bool,
    report_id: str | None,
    dedup_base: str,
) -> InboundReport:
    text = human_text(message)
    marker = _COPY_MARKER.search(text)
    human, copied = (text[: marker.start()], text[marker.end() :]) if marker else (text, "")
    original = original_headers(message)
    original_id = normalize_message_id(header(original, "Message-ID")) if original else None
    if original_id is None:
        original_id = message_id_in_text(copied) or message_id_in_text(text)
    excluded = {addr.lower() for addr in header_addresses(message, ("From", "To"))}
    if original is not None:
        excluded |= {addr.lower() for addr in header_addresses(original, ("From",))}
    recipient = _text_recipient(human, excluded)
    if recipient is None and original is not None:
        to = header_addresses(original, ("To",))
        recipient = to[0] if len(to) == 1 else None
    subject = header(message, "Subject") or ""
    delayed = _DELAY_WORDS.search(subject) or _DELAY_WORDS.search(human[:2000])
    event_type = EventType.DEFERRED if delayed else EventType.BOUNCED
    diagnostic = _diagnostic_line(human)
    found = classify(None, human)
    events: tuple[Event, ...] = ()
    if recipient or email_id or original_id:
        events = (
            Event(
                type=event_type,
                provider=PROVIDER_DSN,
                recipient=recipient,
                subtype=found.subtype if event_type is EventType.BOUNCED else None,
                status=found.status,
                diagnostic=diagnostic,
                sender_side=found.sender_side,
                occurred_at=parse_date(header(message, "Date")),
                message_id=original_id,
                email_id=email_id,
                provider_event_id=f"{dedup_base}/{recipient or 0}/{event_type}",
            ),
        )
    return InboundReport(
        kind=ReportKind.TEXT_BOUNCE,
        events=events,
        email_id=email_id,
        original_message_id=original_id,
        report_message_id=report_id,
        forged_verp=forged,
    )


def _text_recipient(human: str, excluded: set[str]) -> str | None:
    def usable(address: str) -> bool:
        local = address.partition("@")[0]
        return address.lower() not in excluded and not _DAEMON.match(local)

    for match in _QMAIL_RECIPIENT.finditer(human):
        if usable(match.group(1)):
            return match.group(1)
    listed = _FAILED_LIST.search(human)
    if listed:
        for match in _INDENTED_ADDRESS.finditer(human, listed.end()):
            if usable(match.group(1)):
                return match.group(1)
    for match in _ANY_ADDRESS.finditer(human):
        if usable(match.group(1)):
            return match.group(1)
    return None


def _diagnostic_line(human: str) -> str | None:
    """The line of the text that carries the SMTP reply (the one with a status code)."""
    status = find_status(human, failures_only=True)
    lines = [line.strip() for line in human.splitlines() if line.strip()]
    if status:
        for line in lines:
            if status in line:
                return clean_text(line)
    for line in lines:
        if re.match(r"^[45]\d\d[ -]", line):
            return clean_text(line)
    return None


__all__ = ["InboundReport", "ReportKind", "parse_report"]
