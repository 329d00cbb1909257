"""Reading the parts of an inbound message safely: headers, decoded text, the returned original,
dates and addresses. Shared by mailq.bounces.dsn and mailq.bounces.arf.

Inbound bounce mail is hostile input: every reader here returns None or "" for what it cannot
read instead of raising.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage, Message
from email.parser import HeaderParser
from email.utils import getaddresses, parsedate_to_datetime

from mailq.bounces.errors import ForgedVerpToken
from mailq.bounces.events import clean_text, normalize_message_id
from mailq.bounces.verp import Verp

TEXT_SCAN_LIMIT = 64 * 1024  # characters of a message's human text that are searched

ORIGINAL_TYPES = frozenset({"message/rfc822", "message/global"})
ORIGINAL_HEADER_TYPES = frozenset({"text/rfc822-headers", "message/global-headers"})

_MESSAGE_ID_LINE = re.compile(r"^message-id:\s*(<[^<>\s]+@[^<>\s]+>)", re.I | re.M)


def header(message: Message | None, name: str) -> str | None:
    """A header's value as text, None when absent or unreadable."""
    if message is None:
        return None
    try:
        value = message.get(name)
    except Exception:  # the email package can fail on malformed headers: treat as absent
        return None
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def header_addresses(message: Message, names: Sequence[str]) -> list[str]:
    """The mailbox addresses in the named headers, in order."""
    values: list[str] = []
    for name in names:
        try:
            values.extend(str(value) for value in message.get_all(name, []))
        except Exception:  # a malformed header: skip it
            continue
    return [addr for _, addr in getaddresses(values) if "@" in addr]


def text_of(part: Message) -> str:
    """The decoded text of a leaf part ("" when it cannot be decoded)."""
    try:
        if isinstance(part, EmailMessage):
            content = part.get_content()
            if isinstance(content, str):
                return content
        payload = part.get_payload(decode=True)
    except Exception:  # unknown charset, broken transfer encoding: fall back to raw bytes
        try:
            payload = part.get_payload(decode=True)
        except Exception:
            return ""
    if isinstance(payload, bytes):
        return payload.decode("utf-8", "replace")
    return payload if isinstance(payload, str) else ""


def parse_date(value: str | None) -> datetime | None:
    """An RFC 5322 date as an aware datetime (UTC when the zone is unknown)."""
    if not value:
        return None
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def strip_type(value: str | None) -> str | None:
    """The value of a typed DSN field: `rfc822; a@b` → `a@b`, `smtp; 550 ...` → `550 ...`."""
    if not value:
        return None
    kind, semicolon, rest = value.partition(";")
    text = rest if semicolon and " " not in kind.strip() else value
    return clean_text(text)


def address_of(value: str | None) -> str | None:
    """One mailbox address from a field value (`rfc822; <a@b>`, `"A" <a@b>`), else None."""
    text = strip_type(value)
    if not text:
        return None
    for _, addr in getaddresses([text]):
        if "@" in addr and " " not in addr:
            return addr
    return None


def walk(message: Message) -> Iterable[Message]:
    """The parts of `message`, without descending into a returned original."""
    yield message
    if message.get_content_type() in ORIGINAL_TYPES:
        return
    payload = message.get_payload() if message.is_multipart() else None
    if isinstance(payload, list):
        for part in payload:
            if isinstance(part, Message):
                yield from walk(part)


def first_part(message: Message, types: frozenset[str]) -> Message | None:
    """The first part (outside a returned original) of one of the content types."""
    for part in walk(message):
        if part.get_content_type() in types:
            return part
    return None


def report_type(message: Message) -> str | None:
    """The `report-type` of a multipart/report (lowercase), else None."""
    if message.get_content_type() != "multipart/report":
        return None
    value = message.get_param("report-type")
    return value.lower() if isinstance(value, str) else None


def parse_headers(text: str) -> Message:
    """A header block given as text (a text/rfc822-headers part, a DSN block)."""
    return HeaderParser(policy=policy.default).parsestr(text.lstrip("\r\n"))


def original_headers(message: Message) -> Message | None:
    """The headers of the returned original message, if the report carries them."""
    for part in walk(message):
        content_type = part.get_content_type()
        if content_type in ORIGINAL_TYPES:
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                return payload[0]
            return parse_headers(text_of(part))
        if content_type in ORIGINAL_HEADER_TYPES:
            return parse_headers(text_of(part))
    return None


def human_text(message: Message) -> str:
    """The text/plain of the message outside any returned original, capped."""
    chunks: list[str] = []
    size = 0
    for part in walk(message):
        if part.get_content_type() == "text/plain" and not part.is_multipart():
            chunk = text_of(part)
            chunks.append(chunk)
            size += len(chunk)
            if size >= TEXT_SCAN_LIMIT:
                break
    return "\n".join(chunks)[:TEXT_SCAN_LIMIT]


def message_id_in_text(text: str) -> str | None:
    """The Message-ID of a `Message-ID:` line quoted in a text."""
    match = _MESSAGE_ID_LINE.search(text)
    return normalize_message_id(match.group(1)) if match else None


def original_message_id(message: Message) -> str | None:
    """Our Message-ID, from the returned original's headers or, failing that, a quoted
    `Message-ID:` line in the human text."""
    original = original_headers(message)
    found = normalize_message_id(header(original, "Message-ID")) if original else None
    return found or message_id_in_text(human_text(message))


def verp_lookup(verp: Verp | None, addresses: Iterable[str]) -> tuple[int | None, bool]:
    """The email id of the first valid VERP address, and whether a forged one was seen."""
    if verp is None:
        return None, False
    forged = False
    for address in addresses:
        token = verp.local_part(address)
        if token is None:
            continue
        try:
            return verp.read_token(token), forged
        except ForgedVerpToken:
            forged = True
    return None, forged
