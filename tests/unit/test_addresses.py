"""Mailboxes as people write them: parsing, the stored form, special-use names, A-labels."""

from __future__ import annotations

import re

import pytest

from mailq.addresses import (
    AddressError,
    Mailbox,
    address_problem,
    ascii_address,
    message_id_domain,
    message_id_hexes,
    new_message_id,
    parse_mailbox,
)


@pytest.mark.parametrize(
    ("given", "address", "name"),
    [
        ("ann@example.com", "ann@example.com", None),
        ("Acme <hello@acme.example.com>", "hello@acme.example.com", "Acme"),
        ("  Acme   Support  <help@acme.example.com> ", "help@acme.example.com", "Acme Support"),
        ('"Doe, Jane" <jane@example.com>', "jane@example.com", "Doe, Jane"),
        ('"O\'Brien \\"Boss\\"" <ob@example.com>', "ob@example.com", 'O\'Brien "Boss"'),
        ("Jörg Müller <joerg@example.com>", "joerg@example.com", "Jörg Müller"),
        ("John Q. Public <jqp@example.com>", "jqp@example.com", "John Q. Public"),
        ("<bare@example.com>", "bare@example.com", None),
        ('"" <bare@example.com>', "bare@example.com", None),
        ("=?utf-8?q?J=C3=B6rg?= <j@example.com>", "j@example.com", "Jörg"),
        ("山田太郎 <taro@example.jp>", "taro@example.jp", "山田太郎"),
        ("Test <x@example.test>", "x@example.test", "Test"),
        ("x@sub.example", "x@sub.example", None),
        ("ops@localhost", "ops@localhost", None),
        ("a@bücher.de", "a@bücher.de", None),
    ],
)
def test_a_mailbox_gives_its_bare_address_and_its_name(
    given: str, address: str, name: str | None
) -> None:
    assert parse_mailbox(given) == Mailbox(address, name)


@pytest.mark.parametrize(
    ("given", "problem"),
    [
        ("Doe, Jane <jane@example.com>", "must be in double quotes"),
        ('"Doe, Jane <jane@example.com>', "not closed"),
        ("Acme <hello@example.com", "closing '>'"),
        ("Acme <a@example.com> <b@example.com>", "one <address>"),
        ("Acme <>", "empty"),
        ("Acme <not an address>", "@"),
        ("ann@example.com\r\nBcc: victim@example.com", "control characters"),
        ("Ann\n <ann@example.com>", "control characters"),
        ("ann@example.com\n", "control characters"),
        ("x@example.invalid", "special-use"),
        ("Name <x@sub.invalid>", "special-use"),
        ("x@host.local", "special-use"),
        ("a@b.com (Comment)", "invalid characters"),
        ("N" * 300 + " <ann@example.com>", "longer than"),
    ],
)
def test_what_is_not_a_mailbox_is_refused_with_the_reason(given: str, problem: str) -> None:
    with pytest.raises(AddressError, match=problem.replace("(", r"\(")):
        parse_mailbox(given)


@pytest.mark.parametrize(
    "name",
    [
        "Acme",
        "Doe, Jane",
        "John Q. Public",
        'Say "hi"',
        "back\\slash",
        "Jörg Müller",
        "Café, Ltd.",
        "=?utf-8?q?looks_encoded?=",
        "a  b",
        "日本語の名前",
    ],
)
def test_the_stored_form_reads_back_to_the_same_mailbox(name: str) -> None:
    mailbox = Mailbox("someone@example.com", name)
    assert parse_mailbox(str(mailbox)) == mailbox
    assert str(Mailbox("someone@example.com")) == "someone@example.com"


@pytest.mark.parametrize(
    "address",
    ["a@example.test", "a@sub.example.test", "a@example.example", "a@x.example", "a@bücher.test"],
)
def test_test_and_example_names_are_ordinary_names(address: str) -> None:
    """RFC 6761 §6.2: applications SHOULD treat .test as ordinary; app test suites use it."""
    assert address_problem(address) is None


@pytest.mark.parametrize("address", ["a@example.invalid", "a@sub.invalid", "a@bücher.invalid"])
def test_invalid_names_are_refused(address: str) -> None:
    assert address_problem(address) is not None


def test_idn_domains_go_on_the_wire_as_a_labels_and_local_parts_stay() -> None:
    assert ascii_address("a@bücher.de") == "a@xn--bcher-kva.de"
    assert ascii_address("jörg@bücher.de") == "jörg@xn--bcher-kva.de"
    assert ascii_address("a@example.com") == "a@example.com"
    assert Mailbox("jörg@example.com").needs_smtputf8
    assert not Mailbox("a@bücher.de").needs_smtputf8
    assert Mailbox("a@bücher.de").envelope(utf8=False) == "a@xn--bcher-kva.de"
    assert Mailbox("a@bücher.de").envelope(utf8=True) == "a@bücher.de"


def test_message_ids_are_made_in_the_ascii_form_of_the_sender_domain() -> None:
    assert message_id_domain("hello@bücher.de") == "xn--bcher-kva.de"
    assert message_id_domain("hello@acme.example.com") == "acme.example.com"


def test_new_message_ids_begin_with_the_clock_so_later_ones_sort_after() -> None:
    first = new_message_id("example.com")
    later = [new_message_id("example.com") for _ in range(1000)]
    assert re.fullmatch(r"<[0-9a-f]{32}@example\.com>", first)
    assert all(first[1:14] <= m[1:14] for m in later)
    assert len({first, *later}) == 1001  # the random part tells those made at once apart


def test_a_chunk_of_message_ids_shares_one_clock_reading_and_no_id() -> None:
    hexes = message_id_hexes(10_000)
    ids = [hexes[at : at + 32] for at in range(0, len(hexes), 32)]
    assert len(hexes) == 32 * 10_000 and re.fullmatch(r"[0-9a-f]+", hexes)
    assert len({i[:13] for i in ids}) == 1 and len(set(ids)) == 10_000
    assert ids[0][:13] <= new_message_id("x.org")[1:14]
