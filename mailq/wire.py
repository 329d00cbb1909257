"""The JSON form of an email, as `POST /v1/emails` and `mailq enqueue` take it."""

from __future__ import annotations

import base64
import binascii
import re
from datetime import datetime
from typing import Any

from mailq.attachments import MAX_ATTACHMENTS
from mailq.errors import InvalidEmail
from mailq.models import Attachment, Email

FIELDS = frozenset(
    {
        "to",
        "kind",
        "subject",
        "text",
        "html",
        "template",
        "context",
        "send_at",
        "priority",
        "cc",
        "bcc",
        "reply_to",
        "headers",
        "attachments",
        "metadata",
        "from",
        "expires_at",
    }
)

ATTACHMENT_FIELDS = frozenset({"filename", "content_type", "content_base64", "content_id"})

# RFC 3339 date-time (section 5.6); fromisoformat alone also takes ISO forms such as
# 20300101T000000 or week dates, which are not RFC 3339.
_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?P<offset>[Zz]|[+-]\d{2}:\d{2})?",
    re.ASCII,
)


def parse_time(value: object, field: str = "send_at") -> datetime | None:
    """An RFC 3339 date-time with an offset (or None); InvalidEmail names `field`."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidEmail(f"{field}: must be an RFC 3339 date-time string")
    match = _RFC3339.fullmatch(value)
    if match is None:
        raise InvalidEmail(f"{field}: {value[:40]!r} is not an RFC 3339 date-time")
    if match.group("offset") is None:
        raise InvalidEmail(f"{field}: must carry a time zone offset (e.g. Z or +02:00)")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except (ValueError, OverflowError):
        raise InvalidEmail(f"{field}: {value!r} is not an RFC 3339 date-time") from None
    return parsed


def parse_send_at(value: object) -> datetime | None:
    return parse_time(value, "send_at")


def _attachments(raw: object) -> tuple[Attachment, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise InvalidEmail("attachments: must be a list")
    if len(raw) > MAX_ATTACHMENTS:
        # Before decoding any of them.
        raise InvalidEmail(f"attachments: at most {MAX_ATTACHMENTS} files per email")
    attachments = []
    for index, item in enumerate(raw):
        if not isinstance(item, dict):
            raise InvalidEmail(f"attachments[{index}]: must be an object")
        encoded = item.get("content_base64")
        if not isinstance(encoded, str):
            raise InvalidEmail(f"attachments[{index}].content_base64: required, a string")
        try:
            content = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidEmail(f"attachments[{index}].content_base64: not base64") from None
        unknown = sorted(set(item) - ATTACHMENT_FIELDS)
        if unknown:
            raise InvalidEmail(f"attachments[{index}].{unknown[0]}: unknown field")
        filename = item.get("filename")
        content_type = item.get("content_type")
        if not isinstance(filename, str) or not isinstance(content_type, str):
            raise InvalidEmail(f"attachments[{index}]: filename and content_type are strings")
        content_id = item.get("content_id")
        if content_id is not None and not isinstance(content_id, str):
            raise InvalidEmail(f"attachments[{index}].content_id: must be a string")
        attachments.append(Attachment(filename, content_type, content, content_id))
    return tuple(attachments)


def email_from_json(data: dict[str, Any]) -> Email:
    """An Email from one JSON object; InvalidEmail names the first bad field."""
    unknown = sorted(set(data) - FIELDS)
    if unknown:
        raise InvalidEmail(f"{unknown[0]}: unknown field")
    for name in ("cc", "bcc", "reply_to"):
        if data.get(name) is not None and not isinstance(data[name], list):
            raise InvalidEmail(f"{name}: must be a list of addresses")
    for name in ("context", "headers", "metadata"):
        if data.get(name) is not None and not isinstance(data[name], dict):
            raise InvalidEmail(f"{name}: must be an object")
    for name in ("to", "kind", "subject", "text", "html", "template", "from"):
        if data.get(name) is not None and not isinstance(data[name], str):
            raise InvalidEmail(f"{name}: must be a string")
    priority = data.get("priority")
    if priority is not None and (isinstance(priority, bool) or not isinstance(priority, int)):
        raise InvalidEmail("priority: must be a whole number from 0 to 9")
    return Email(
        to=data.get("to") or "",
        kind=data.get("kind") or "welcome",
        subject=data.get("subject"),
        text=data.get("text"),
        html=data.get("html"),
        template=data.get("template"),
        context=data.get("context") or {},
        send_at=parse_send_at(data.get("send_at")),
        priority=priority,
        cc=tuple(data.get("cc") or ()),
        bcc=tuple(data.get("bcc") or ()),
        reply_to=tuple(data.get("reply_to") or ()),
        headers=data.get("headers") or {},
        attachments=_attachments(data.get("attachments")),
        metadata=data.get("metadata") or {},
        from_address=data.get("from"),
        expires_at=parse_time(data.get("expires_at"), "expires_at"),
    )
