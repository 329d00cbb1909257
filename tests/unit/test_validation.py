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
    from mailq.addresses import _address_problem_slow, _plain_address_ok

    if _plain_address_ok(address):
        assert _address_problem_slow(address) is None, address
