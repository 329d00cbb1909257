from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from mailq import Attachment, Email, InvalidEmail
from mailq.validation import to_row


def row(**fields: object):  # type: ignore[no-untyped-def]
    base: dict[str, object] = {"to": "ann@example.com", "subject": "Hi", "text": "Hello"}
    base.update(fields)
    return to_row(Email(**base), default_from="mailq@localhost")  # type: ignore[arg-type]


def test_a_valid_email_gets_its_kind_defaults_and_a_message_id() -> None:
    stored = row(kind="search_engine")
    assert stored.priority == 5
    assert stored.message_id.startswith("<") and stored.message_id.endswith("@localhost>")
    assert json.loads(stored.content)["from"] == "mailq@localhost"


def test_message_ids_are_unique() -> None:
    assert len({row().message_id for _ in range(1000)}) == 1000


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"to": "not an address"}, "to:"),
        ({"to": "ann@example.com\r\nBcc: victim@example.com"}, "to:"),
        ({"subject": "Hi\r\nBcc: victim@example.com"}, "subject:"),
        ({"subject": "Hi\x00"}, "subject:"),
        ({"text": "body\x00"}, "text:"),
        ({"subject": None}, "subject:"),
        ({"text": None}, "text:"),
        ({"kind": "Bad Kind"}, "kind:"),
        ({"priority": 10}, "priority:"),
        ({"priority": True}, "priority:"),
        ({"cc": ["fine@example.com", "bad"]}, "cc[1]:"),
        ({"headers": {"X-Ok": "a\nb"}}, "headers.X-Ok:"),
        ({"headers": {"Bcc": "x@example.com"}}, "headers.Bcc:"),
        ({"headers": {"Bad Name": "x"}}, "headers:"),
        ({"send_at": datetime(2030, 1, 1)}, "send_at:"),
        ({"send_at": datetime.now(UTC) + timedelta(days=5000)}, "send_at:"),
        ({"subject": "Hi {{ name }}"}, "subject: the template uses name"),
        ({"metadata": {"nested": {"a": 1}}}, "metadata.nested:"),
        ({"attachments": [Attachment("a.txt", "not a type", b"x")]}, "attachments[0]"),
    ],
)
def test_bad_input_is_refused_naming_the_field(fields: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidEmail, match="^" + field.replace("[", r"\[").replace("]", r"\]")):
        row(**fields)


def test_template_variables_must_be_in_the_context() -> None:
    stored = row(subject="Hi {{ name }}", context={"name": "Ann"})
    assert json.loads(stored.content)["context"] == {"name": "Ann"}


def test_single_label_domains_are_accepted_for_internal_relays() -> None:
    assert row(to="ops@localhost").to_address == "ops@localhost"


@pytest.mark.parametrize(
    "address",
    [
        "ann@example.com",
        "a.b+tag@mail.example.co.uk",
        "o'brien@example.ie",
        "x@sub-domain.example.museum",
        "a..b@example.com",
        ".a@example.com",
        "a.@example.com",
        "a@-example.com",
        "a@example-.com",
        "a@example",
        "a@example.test",
        "a@x.localhost",
        "a@" + "x" * 64 + ".com",
        "l" * 65 + "@example.com",
        "a@" + ".".join(["abcdefghij"] * 25) + ".com",
        "ünï@example.com",
        "a@bücher.de",
        '"quoted"@example.com',
        "a@[127.0.0.1]",
        "a@1.2.3.4",
    ],
)
def test_the_fast_path_agrees_with_email_validator(address: str) -> None:
    from mailq.addresses import _address_problem_slow, is_plain_address

    if is_plain_address(address):
        assert _address_problem_slow(address) is None, address


# -- issue "Email as people write it" -----------------------------------------------------


def test_every_address_field_takes_a_mailbox_and_the_bare_address_is_what_is_matched() -> None:
    stored = row(
        to="Ann Lee <Ann@Example.com>",
        cc=['"Doe, Jane" <jane@example.com>'],
        bcc=["Jörg <joerg@example.com>"],
        reply_to=["Support <help@acme.example.com>"],
        from_address="Acme <hello@acme.example.com>",
    )
    assert (stored.to_address, stored.to_name) == ("Ann@Example.com", "Ann Lee")
    content = json.loads(stored.content)
    assert content["from"] == "Acme <hello@acme.example.com>"
    assert content["cc"] == ['"Doe, Jane" <jane@example.com>']
    assert content["bcc"] == ["Jörg <joerg@example.com>"]
    assert content["reply_to"] == ["Support <help@acme.example.com>"]
    assert stored.message_id.endswith("@acme.example.com>")


def test_a_bare_to_has_no_name() -> None:
    assert row().to_name is None


@pytest.mark.parametrize("address", ["x@example.test", "Ann <ann@app.test>", "x@sub.example"])
def test_test_names_are_accepted(address: str) -> None:
    """A defect of the issue: `x@example.test` was refused as special-use."""
    assert row(to=address).to_address.endswith((".test", ".example"))


def test_invalid_names_are_refused() -> None:
    with pytest.raises(InvalidEmail, match=r"^to: 'x@example\.invalid' is not a valid"):
        row(to="x@example.invalid")


def test_a_kind_declared_with_a_from_sends_from_it_unless_the_email_says_otherwise() -> None:
    from mailq.kinds import BUILTIN_KINDS, KindPolicy

    kinds = {
        **BUILTIN_KINDS,
        "invoice": KindPolicy("invoice", 3, from_address="Billing <billing@acme.example.com>"),
    }
    email = Email(to="ann@example.com", kind="invoice", subject="Hi", text="x")
    stored = to_row(email, default_from="mailq@localhost", kinds=kinds)
    assert json.loads(stored.content)["from"] == "Billing <billing@acme.example.com>"
    assert stored.message_id.endswith("@acme.example.com>")
    own = Email(
        to="ann@example.com", kind="invoice", subject="Hi", text="x", from_address="me@x.example"
    )
    assert json.loads(to_row(own, default_from="a@b.example", kinds=kinds).content)["from"] == (
        "me@x.example"
    )


def test_an_undeclared_kind_is_refused_naming_the_known_ones() -> None:
    """A defect of the issue: `kind="newsletter"` was queued and waited forever."""
    with pytest.raises(InvalidEmail) as caught:
        row(kind="newsletter")
    message = str(caught.value)
    assert message.startswith("kind: 'newsletter' is not a configured kind (known: ")
    assert "search_engine" in message and "[kinds.newsletter]" in message


def test_a_text_attachment_gets_a_charset_and_parameters_are_accepted() -> None:
    """A defect of the issue: text attachments went out without a charset, and
    `text/plain; charset=utf-8` was refused."""
    files = [
        Attachment("notes.txt", "text/plain", "naïve café".encode()),
        Attachment("data.csv", "Text/CSV; Charset=ISO-8859-1", "caf\xe9".encode("latin-1")),
        Attachment("a.txt", 'text/plain; charset="utf-8"; format=flowed', b"x"),
        Attachment("report.pdf", "application/pdf", b"%PDF"),
    ]
    stored = json.loads(row(attachments=files).content)["attachments"]
    assert [a["content_type"] for a in stored] == [
        "text/plain; charset=utf-8",
        "text/csv; charset=ISO-8859-1",
        "text/plain; charset=utf-8; format=flowed",
        "application/pdf",
    ]


@pytest.mark.parametrize(
    ("attachment", "problem"),
    [
        (Attachment("a.txt", "text/plain", "caf\xe9".encode("latin-1")), "not UTF-8"),
        (Attachment("a.txt", "text/plain; charset=klingon", b"x"), "unknown charset"),
        (Attachment("a.txt", "text/plain; charset", b"x"), "not a parameter"),
        (Attachment("a.eml", "message/rfc822", b"x"), "application/octet-stream"),
        (Attachment("a", "multipart/mixed", b"x"), "cannot be an attachment"),
        (Attachment("a.png", "image/png", b"x", content_id="has space"), "not a Content-ID"),
    ],
)
def test_bad_attachments_are_refused_with_the_reason(attachment: Attachment, problem: str) -> None:
    with pytest.raises(InvalidEmail, match=r"^attachments\[0\]\.content_(type|id): .*" + problem):
        row(attachments=[attachment], html="<img src='cid:logo'>")


def test_an_inline_image_needs_html_and_its_own_content_id() -> None:
    logo = Attachment("logo.png", "image/png", b"\x89PNG", content_id="<logo@acme>")
    stored = json.loads(row(html='<img src="cid:logo@acme">', attachments=[logo]).content)
    assert stored["attachments"][0]["content_id"] == "logo@acme"
    with pytest.raises(InvalidEmail, match=r"^attachments\[0\]\.content_id: .*html body"):
        row(attachments=[logo])
    with pytest.raises(InvalidEmail, match=r"^attachments\[1\]\.content_id: .*twice"):
        row(html="<p>x</p>", attachments=[logo, logo])
