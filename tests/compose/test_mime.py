"""The hand-written MIME writer checked by parsing its output with the standard library."""

from __future__ import annotations

import email
from datetime import UTC, datetime
from email import policy
from typing import Any

from mailq.compose.message import build_message
from mailq.models import ClaimedEmail


def claimed(**content: Any) -> ClaimedEmail:
    base: dict[str, Any] = {"from": "app@example.com", "subject": "Hi", "text": "Hello"}
    base.update(content)
    return ClaimedEmail(
        id=7,
        kind="welcome",
        priority=0,
        attempt=1,
        max_attempts=5,
        to="ann@example.com",
        message_id="<abc@example.com>",
        content=base,
        claimed_at=datetime.now(UTC),
    )


def parse(data: bytes) -> Any:
    return email.message_from_bytes(data, policy=policy.default)


def test_plain_text_round_trips() -> None:
    message = parse(build_message(claimed(text="line one\n.line two\n")).data)
    assert message["Message-ID"] == "<abc@example.com>"
    assert message["To"] == "ann@example.com"
    assert message.get_content().replace("\r\n", "\n") == "line one\n.line two\n"
    assert not message.defects


def test_html_carries_a_text_alternative_and_templates_are_rendered() -> None:
    message = parse(
        build_message(
            claimed(
                subject="Bonjour {{ name }} — ça va?",
                text=None,
                html="<p>Hi {{ name }}</p><script>x()</script>",
                context={"name": "<Zoë>"},
            )
        ).data
    )
    assert message["Subject"] == "Bonjour <Zoë> — ça va?"
    html = message.get_body(("html",)).get_content()
    text = message.get_body(("plain",)).get_content()
    assert "&lt;Zoë&gt;" in html, "HTML is autoescaped"
    assert "Hi <Zoë>" in text and "x()" not in text


def test_attachments_and_headers_survive() -> None:
    import base64

    out = build_message(
        claimed(
            cc=["cc@example.com"],
            bcc=["hidden@example.com"],
            reply_to=["help@example.com"],
            headers={"X-Campaign": "spring"},
            attachments=[
                {
                    "filename": "résumé.pdf",
                    "content_type": "application/pdf",
                    "content_base64": base64.b64encode(b"%PDF-1.4 bytes").decode(),
                }
            ],
        )
    )
    message = parse(out.data)
    assert out.other_recipients == ("cc@example.com", "hidden@example.com")
    assert "hidden@example.com" not in out.data.decode(), "Bcc never appears in the message"
    assert message["Cc"] == "cc@example.com"
    assert message["X-Campaign"] == "spring"
    (attachment,) = list(message.iter_attachments())
    assert attachment.get_filename() == "résumé.pdf"
    assert attachment.get_content() == b"%PDF-1.4 bytes"


def test_long_lines_and_long_subjects_are_folded_within_limits() -> None:
    data = build_message(claimed(subject="word " * 60, text="x" * 5000)).data
    assert all(len(line) <= 998 for line in data.split(b"\r\n"))
    assert parse(data)["Subject"].strip() == ("word " * 60).strip()


def test_redirect_all_keeps_the_original_recipients_in_a_header() -> None:
    out = build_message(claimed(cc=["cc@example.com"]), redirect_all_to="qa@staging.test")
    message = parse(out.data)
    assert out.to == "qa@staging.test" and out.other_recipients == ()
    assert message["X-Mailq-Original-To"] == "ann@example.com, cc@example.com"
