"""Headers by the RFCs: every message shape parses strictly, display names survive RFC 2047,
domains go as A-labels, Date is +0000, the last line ends in CRLF, campaigns carry List-Id
and Feedback-ID, inline images are related to the HTML, and a DKIM signature verifies."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from mailq import Attachment, Email
from mailq.compose.dkim import DkimSigner
from mailq.compose.message import OutgoingMessage, build_message
from mailq.compose.unsubscribe import UnsubscribeLinks
from mailq.config import DkimKey
from mailq.kinds import BUILTIN_KINDS, KindPolicy
from mailq.models import ClaimedEmail
from mailq.validation import to_row
from tests.support.messages import DkimKeys, header_text, make_dkim_keys, strict_parse

LINKS = UnsubscribeLinks(b"s" * 32, "https://mail.example.com")
KINDS = {**BUILTIN_KINDS, "invoice": KindPolicy("invoice", 1, list_unsubscribe=False)}
LOGO = Attachment("logo.png", "image/png", b"\x89PNG\r\n\x1a\n" + bytes(range(256)), "logo@acme")
LONG_CJK = "日本語の名前がとても長い場合にはどうなるのでしょうか、テストしてみます"
LONG_ASCII = "A very long display name that certainly needs folding past seventy-eight chars"


def claimed(*, campaign_id: int | None = None, **fields: Any) -> ClaimedEmail:
    base: dict[str, Any] = {
        "to": "ann@example.com",
        "subject": "Hi {{ name }}",
        "text": "Hello {{ name }}",
        "context": {"name": "Ann"},
        "from_address": "Acme <hello@acme.example.com>",
    }
    base.update(fields)
    row = to_row(Email(**base), default_from="mailq@localhost", kinds=KINDS)
    content = json.loads(row.content)
    if campaign_id is not None:
        content["campaign_name"] = "Spring sale, 2030"
    return ClaimedEmail(
        id=1,
        kind=row.kind,
        priority=row.priority,
        attempt=1,
        max_attempts=3,
        to=row.to_address,
        message_id=row.message_id,
        content=content,
        claimed_at=datetime.now(UTC),
        campaign_id=campaign_id,
        to_name=row.to_name,
    )


SHAPES: dict[str, dict[str, Any]] = {
    "text without a final newline": {"text": "no newline at the end"},
    "text with long lines": {"text": "x" * 2000 + "\nünïcode line\n"},
    "html and text": {"html": "<p>Hi <b>{{ name }}</b></p>"},
    "html only": {"text": None, "html": "<p>Hi {{ name }}</p>"},
    "attachments": {
        "attachments": [
            Attachment("notes.txt", "text/plain", "naïve café\n".encode()),
            Attachment("data.csv", "text/csv; charset=iso-8859-1", "caf\xe9".encode("latin-1")),
            Attachment("rapport é.pdf", "application/pdf", b"%PDF-1.4 " * 100),
        ]
    },
    "inline image and attachment": {
        "html": '<p>Hi <img src="cid:logo@acme" alt="logo"></p>',
        "attachments": [LOGO, Attachment("terms.pdf", "application/pdf", b"%PDF")],
    },
    "inline image, no other file": {"html": '<img src="cid:logo@acme">', "attachments": [LOGO]},
    "ascii names": {
        "to": "Ann Lee <ann@example.com>",
        "cc": ['"Doe, Jane" <jane@example.com>', '"Say \\"hi\\"" <hi@example.com>'],
        "reply_to": ["John Q. Public <jqp@example.com>"],
    },
    "non-ascii names": {
        "to": "Jörg Müller <joerg@example.com>",
        "from_address": '"Café, Ltd." <hello@acme.example.com>',
        "cc": [f"{LONG_CJK} <taro@example.jp>"],
        "reply_to": [f"{LONG_ASCII} <long@example.com>"],
        "subject": "Grüße, {{ name }}",
    },
    "idn domains": {
        "to": "Ann <ann@bücher.example>",
        "from_address": "Bücher <hello@bücher.de>",
        "cc": ["c@münchen.example"],
    },
    "non-ascii local part (SMTPUTF8)": {
        "to": "Jörg <jörg@bücher.example>",
        "cc": ["Ann <ann@example.com>"],
    },
    "campaign": {"kind": "search_engine", "campaign_id": 42},
    "campaign, non-ascii sender": {
        "kind": "search_engine",
        "campaign_id": 7,
        "from_address": "Bücher News <news@bücher.de>",
    },
}


def build(shape: dict[str, Any], **options: Any) -> OutgoingMessage:
    fields = dict(shape)
    list_unsubscribe = fields.get("kind") == "search_engine"
    return build_message(
        claimed(**fields), unsubscribe=LINKS, list_unsubscribe=list_unsubscribe, **options
    )


@pytest.mark.parametrize("shape", SHAPES.values(), ids=list(SHAPES))
def test_every_shape_parses_strictly_and_ends_in_crlf(shape: dict[str, Any]) -> None:
    message = build(shape)
    parsed = strict_parse(message.data)
    assert parsed["Message-ID"] == message.message_id
    assert parsed.get_body(("plain",)) is not None
    if not message.utf8:
        assert message.data.isascii(), "a message without SMTPUTF8 must be ASCII"


def test_the_date_is_written_plus_0000() -> None:
    """A defect of the issue: `Date: ... GMT` (obsolete, RFC 5322 §4.3)."""
    data = build(SHAPES["html and text"]).data
    date = re.search(rb"^Date: (.+)\r$", data, re.MULTILINE)
    assert date is not None and date.group(1).endswith(b" +0000"), date
    assert strict_parse(data)["Date"].datetime.utcoffset().total_seconds() == 0


def test_a_text_only_message_ends_in_crlf() -> None:
    """A defect of the issue: no final CRLF, so a file differed from what SMTP delivers."""
    assert build(SHAPES["text without a final newline"]).data.endswith(b"no newline at the end\r\n")


def test_display_names_are_rfc_2047_encoded_and_read_back_as_given() -> None:
    data = build(SHAPES["non-ascii names"]).data
    head = data.split(b"\r\n\r\n")[0]
    assert b"=?utf-8?" in head and head.isascii()
    assert max(len(line) for line in head.split(b"\r\n")) <= 78
    parsed = strict_parse(data)
    assert [(a.display_name, a.addr_spec) for a in parsed["To"].addresses] == [
        ("Jörg Müller", "joerg@example.com")
    ]
    assert parsed["From"].addresses[0].display_name == "Café, Ltd."
    assert header_text(data, "Cc") == f"{LONG_CJK} <taro@example.jp>"
    assert parsed["Reply-To"].addresses[0].display_name == LONG_ASCII
    assert header_text(data, "Subject") == "Grüße, Ann"


def test_ascii_names_are_quoted_where_they_must_be() -> None:
    data = build(SHAPES["ascii names"]).data
    assert b"To: Ann Lee <ann@example.com>\r\n" in data
    assert b'Cc: "Doe, Jane" <jane@example.com>, "Say \\"hi\\"" <hi@example.com>\r\n' in data
    parsed = strict_parse(data)
    assert [a.display_name for a in parsed["Cc"].addresses] == ["Doe, Jane", 'Say "hi"']
    assert parsed["Reply-To"].addresses[0].display_name == "John Q. Public"


def test_idn_domains_go_as_a_labels_in_headers_envelope_and_message_id() -> None:
    """A defect of the issue: IDN domains went as raw UTF-8 to servers without SMTPUTF8."""
    message = build(SHAPES["idn domains"])
    assert not message.needs_smtputf8
    assert message.mail_from == "hello@xn--bcher-kva.de"
    assert message.to == "ann@xn--bcher-kva.example"
    assert message.other_recipients == ("c@xn--mnchen-3ya.example",)
    parsed = strict_parse(message.data)
    assert parsed["To"].addresses[0].domain == "xn--bcher-kva.example"
    assert parsed["From"].addresses[0].display_name == "Bücher"
    assert message.message_id.endswith("@xn--bcher-kva.de>")


def test_a_non_ascii_local_part_makes_an_smtputf8_message_with_raw_utf8() -> None:
    message = build(SHAPES["non-ascii local part (SMTPUTF8)"])
    assert message.needs_smtputf8 and message.utf8
    assert message.to == "jörg@bücher.example"
    assert "To: Jörg <jörg@bücher.example>\r\n".encode() in message.data


def test_campaign_emails_carry_list_id_and_feedback_id() -> None:
    """A defect of the issue: campaign emails had neither (Gmail's feedback loop keys on
    Feedback-ID)."""
    data = build(SHAPES["campaign"], feedback_sender_id="acme-mail").data
    parsed = strict_parse(data)
    assert parsed["List-Id"] == '"Spring sale, 2030" <42.search_engine.acme.example.com>'
    assert parsed["Feedback-ID"] == "42:search_engine:acme-mail"
    assert parsed["List-Unsubscribe"] is not None
    idn = build(SHAPES["campaign, non-ascii sender"]).data
    assert header_text(idn, "List-Id") == '"Spring sale, 2030" <7.search_engine.xn--bcher-kva.de>'
    assert b"Feedback-ID: 7:search_engine:mailq\r\n" in idn
    single = build(SHAPES["html and text"]).data
    assert b"List-Id:" not in single and b"Feedback-ID:" not in single


def test_list_unsubscribe_uses_the_bare_from_address() -> None:
    parsed = strict_parse(build(SHAPES["campaign"]).data)
    assert "<mailto:hello@acme.example.com?subject=unsubscribe>" in parsed["List-Unsubscribe"]


def test_a_text_attachment_carries_its_charset() -> None:
    """A defect of the issue: text attachments went out without a charset (mojibake)."""
    parsed = strict_parse(build(SHAPES["attachments"]).data)
    files = {part.get_filename(): part for part in parsed.iter_attachments()}
    assert files["notes.txt"]["Content-Type"].params["charset"] == "utf-8"
    assert files["notes.txt"].get_content() == "naïve café\n"
    assert files["data.csv"].get_content() == "café"
    assert files["rapport é.pdf"].get_content() == b"%PDF-1.4 " * 100


def test_inline_images_are_related_parts_of_the_html_with_their_content_id() -> None:
    parsed = strict_parse(build(SHAPES["inline image and attachment"]).data)
    assert parsed.get_content_type() == "multipart/mixed"
    related = next(p for p in parsed.walk() if p.get_content_type() == "multipart/related")
    assert related.get_param("type") == "text/html"
    html, image = list(related.iter_parts())
    assert 'src="cid:logo@acme"' in html.get_content()
    assert image["Content-ID"] == "<logo@acme>"
    assert image.get_content_disposition() == "inline"
    assert image.get_content() == LOGO.content
    assert [p.get_filename() for p in parsed.iter_attachments()] == ["terms.pdf"]
    alone = strict_parse(build(SHAPES["inline image, no other file"]).data)
    assert alone.get_content_type() == "multipart/alternative"
    assert alone.get_body(("related",)) is not None


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> DkimKeys:
    return make_dkim_keys(tmp_path_factory.mktemp("dkim"))


@pytest.mark.parametrize("shape", SHAPES.values(), ids=list(SHAPES))
def test_a_dkim_signed_message_of_every_shape_verifies(keys: DkimKeys, shape: Any) -> None:
    signer = DkimSigner(DkimKey(keys.domain, keys.selector, keys.private))
    signed = signer.sign(build(shape))
    strict_parse(signed.data)
    assert keys.verifies(signed.data)
    assert not keys.verifies(signed.data[:-2] + b"!\r\n"), "a changed body still verifies"


def test_the_signature_covers_list_id_and_feedback_id(keys: DkimKeys) -> None:
    signer = DkimSigner(DkimKey(keys.domain, keys.selector, keys.private))
    signed = signer.sign(build(SHAPES["campaign"]))
    signature = strict_parse(signed.data)["DKIM-Signature"].lower().replace(" ", "")
    assert "list-id" in signature and "feedback-id" in signature
    assert keys.verifies(signed.data)


def test_the_file_outbox_keeps_a_verifiable_signature(keys: DkimKeys, tmp_path: Path) -> None:
    import asyncio

    from mailq.delivery.local import FileSender

    signer = DkimSigner(DkimKey(keys.domain, keys.selector, keys.private))
    outbox = FileSender(tmp_path / "outbox")
    for index, shape in enumerate(SHAPES.values()):
        signed = signer.sign(build(shape))
        signed = replace(signed, email_id=index)  # one file per shape
        asyncio.run(outbox.send(signed))
        written = outbox.path_for(signed).read_bytes()
        assert written.endswith(b"\r\n")
        strict_parse(written)
        assert keys.verifies(written), list(SHAPES)[index]


def test_no_line_of_a_header_is_over_998_octets() -> None:
    # Issue 11, case 5: a long header value, a long file name and a long SMTPUTF8 subject were
    # queued and then refused by the server ("500 Line too long").
    long_name = Attachment("é" * 200 + ".txt", "text/plain", b"x")
    message = build(
        {
            "to": "用户@example.com",
            "subject": "件名" * 400,
            "headers": {"X-Long": "a" * 1200},
            "attachments": [long_name, Attachment("x" * 255, "text/plain", b"y")],
        }
    )
    assert message.utf8
    assert max(len(line) for line in message.data.split(b"\r\n")) <= 998
    parsed = strict_parse(message.data)
    assert header_text(message.data, "X-Long") == "a" * 1200
    assert header_text(message.data, "Subject") == "件名" * 400
    names = [part.get_filename() for part in parsed.walk() if part.get_filename()]
    assert names == ["é" * 200 + ".txt", "x" * 255]
