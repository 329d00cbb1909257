"""Messages built the way the worker builds them (mailq.message.build_message)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from mailq import Email
from mailq.compose.message import OutgoingMessage, build_message
from mailq.models import Attachment, ClaimedEmail
from mailq.validation import to_row

PNG = b"\x89PNG\r\n\x1a\n-not-really-a-png"


def message(email_id: int = 1, *, inline: bool = False, **fields: Any) -> OutgoingMessage:
    base: dict[str, Any] = {
        "to": f"ann{email_id}@example.com",
        "subject": "Hi {{ name }}",
        "text": "Hello {{ name }}.",
        "context": {"name": "Ann"},
    }
    base.update(fields)
    row = to_row(Email(**base), default_from="news@example.com")
    content = json.loads(row.content)
    if inline:
        # An inline image the HTML names by cid: (the enqueue path has no content_id field
        # yet; stored content may carry one).
        content["attachments"].append(
            {
                "filename": "logo.png",
                "content_type": "image/png",
                "content_base64": base64.b64encode(PNG).decode(),
                "content_id": "logo",
            }
        )
    claimed = ClaimedEmail(
        email_id, row.kind, row.priority, 1, 3, row.to_address, row.message_id, content,
        datetime.now(UTC),
    )  # fmt: skip
    return build_message(claimed)


def full(email_id: int = 1) -> OutgoingMessage:
    """Every field a JSON API maps: cc, bcc, reply-to, html, headers, files, an inline part."""
    return message(
        email_id,
        inline=True,
        cc=["cy@example.com"],
        bcc=["bo@example.com"],
        reply_to=["help@example.com"],
        html='<p>Hello {{ name }} <img src="cid:logo"></p>',
        headers={"X-Campaign": "spring"},
        attachments=[Attachment("report.pdf", "application/pdf", b"%PDF-1.4 report")],
    )


def endpoint(url: str) -> str:
    return quote(url, safe="")
