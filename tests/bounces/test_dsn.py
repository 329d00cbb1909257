"""Inbound bounce mail: RFC 3464 DSNs, RFC 5965 feedback reports, human-text bounces and
auto-replies, from the sample messages in data/dsn/ (their sources: data/SOURCES.md)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from mailq.bounces.dsn import parse_report
from mailq.bounces.events import PROVIDER_ARF, PROVIDER_DSN, EventType, Subtype
from mailq.bounces.report import ReportKind
from mailq.bounces.verp import Verp

from .conftest import sample


def ours(email_id: int | str) -> str:
    return f"<c0ffee{'0' * 22}{email_id}@shop.example.com>"


def test_the_samples_were_made_with_the_test_key(verp: Verp) -> None:
    text = sample("postfix_user_unknown.eml").decode()
    assert verp.address(4244) in text


@pytest.mark.parametrize(
    ("name", "email_id", "recipient", "event_type", "subtype", "status", "sender_side"),
    [
        (
            "rfc3464_failed_timeout.eml",
            4242,
            "louisl@larry.slip.umd.edu",
            "bounced",
            "soft",
            "4.0.0",
            False,
        ),
        ("postfix_user_unknown.eml", 4244, "jane@example.net", "bounced", "hard", "5.1.1", False),
        ("postfix_delayed.eml", 4245, "ops@example.org", "deferred", None, "4.4.1", False),
        (
            "gmail_user_unknown.eml",
            4248,
            "nobody.here@gmail.com",
            "bounced",
            "hard",
            "5.1.1",
            False,
        ),
        (
            "postfix_gmail_unauthenticated.eml",
            4249,
            "dave@gmail.com",
            "bounced",
            "hard",
            "5.7.26",
            True,
        ),
        ("microsoft_5_7_515.eml", 4250, "erin@outlook.com", "bounced", "hard", "5.7.515", True),
    ],
)
def test_standard_dsn(
    verp: Verp,
    name: str,
    email_id: int,
    recipient: str,
    event_type: str,
    subtype: str | None,
    status: str,
    sender_side: bool,
) -> None:
    report = parse_report(sample(name), verp=verp)
    assert report.kind is ReportKind.DSN
    assert report.email_id == email_id
    assert report.original_message_id == ours(email_id)
    (event,) = report.events
    assert event.provider == PROVIDER_DSN
    assert event.type == event_type
    assert event.subtype == subtype
    assert event.status == status
    assert event.sender_side is sender_side
    assert event.recipient == recipient
    assert event.email_id == email_id
    assert event.message_id == ours(email_id)
    assert event.occurred_at is not None and event.occurred_at.tzinfo is not None
    assert event.diagnostic and "\n" not in event.diagnostic


def test_postfix_details(verp: Verp) -> None:
    (event,) = parse_report(sample("postfix_user_unknown.eml"), verp=verp).events
    assert event.diagnostic == (
        "550 5.1.1 <jane@example.net>: Recipient address rejected: "
        "User unknown in virtual mailbox table"
    )
    assert event.occurred_at == datetime(2024, 3, 12, 10, 15, 1, tzinfo=UTC)  # Arrival-Date


def test_multi_recipient_dsn(verp: Verp) -> None:
    report = parse_report(sample("rfc3464_multiple_recipients.eml"), verp=verp)
    assert [(e.recipient, e.type, e.subtype) for e in report.events] == [
        ("arathib@vnet.ibm.com", EventType.BOUNCED, Subtype.HARD),
        ("johnh@hpnjld.njd.hp.com", EventType.DEFERRED, None),
        ("wsnell@sdcc13.ucsd.edu", EventType.BOUNCED, Subtype.HARD),
    ]
    assert len({e.dedup_key for e in report.events}) == 3


def test_dsn_without_verp_is_matched_by_message_id(verp: Verp) -> None:
    report = parse_report(sample("microsoft_recipient_not_found.eml"), verp=verp)
    assert report.email_id is None
    (event,) = report.events
    assert event.message_id == ours("aaaa")
    assert (event.recipient, event.subtype, event.status) == ("frank@contoso.com", "hard", "5.1.10")


@pytest.mark.parametrize(
    ("name", "email_id", "recipient"),
    [
        ("exim_text_bounce.eml", 4246, "carol@example.com"),
        ("qmail_text_bounce.eml", 4247, "bob@example.org"),
    ],
)
def test_human_text_bounce(verp: Verp, name: str, email_id: int, recipient: str) -> None:
    report = parse_report(sample(name), verp=verp)
    assert report.kind is ReportKind.TEXT_BOUNCE
    (event,) = report.events
    assert (event.type, event.subtype, event.status) == ("bounced", "hard", "5.1.1")
    assert event.recipient == recipient
    assert event.email_id == email_id
    assert event.message_id == ours(email_id)
    assert event.diagnostic and "550 5.1.1" in event.diagnostic


def test_text_bounce_matched_by_message_id_alone() -> None:
    report = parse_report(sample("qmail_text_bounce.eml"), verp=None)
    (event,) = report.events
    assert event.email_id is None
    assert event.message_id == ours(4247)


def test_rfc5965_feedback_report(verp: Verp) -> None:
    report = parse_report(sample("rfc5965_abuse.eml"), verp=verp)
    assert report.kind is ReportKind.FEEDBACK
    assert report.feedback_type == "abuse"
    # Sent to the feedback address, not a VERP one: Original-Mail-From names the email.
    assert report.email_id == 4251
    (event,) = report.events  # Original-Rcpt-To and Removal-Recipient name the same address
    assert event.type is EventType.COMPLAINED
    assert event.provider == PROVIDER_ARF
    assert event.recipient == "user@example.com"
    assert event.message_id == ours(4251)
    assert event.feedback_type == "abuse"
    assert event.subtype is None and not event.sender_side


def test_redacted_feedback_report(verp: Verp) -> None:
    report = parse_report(sample("yahoo_arf_redacted.eml"), verp=verp)
    (event,) = report.events
    assert event.type is EventType.COMPLAINED
    assert event.recipient is None  # "redacted@…" is not taken for an address
    assert event.email_id == 4252
    assert event.message_id == ours(4252)


@pytest.mark.parametrize("feedback_type", ["not-spam", "auth-failure", "virus"])
def test_feedback_that_is_not_a_complaint(verp: Verp, feedback_type: str) -> None:
    raw = sample("rfc5965_abuse.eml").replace(
        b"Feedback-Type: abuse", f"Feedback-Type: {feedback_type}".encode()
    )
    report = parse_report(raw, verp=verp)
    assert report.kind is ReportKind.FEEDBACK
    assert report.feedback_type == feedback_type
    assert report.events == ()


def test_out_of_office_is_no_bounce(verp: Verp) -> None:
    report = parse_report(sample("out_of_office.eml"), verp=verp)
    assert report.kind is ReportKind.AUTOREPLY
    assert report.events == ()
    assert report.email_id == 4242


def test_an_ordinary_message_is_unrecognised(verp: Verp) -> None:
    raw = (
        b"From: Ann <ann@example.com>\r\nTo: shop@shop.example.com\r\nSubject: hello\r\n\r\nHi!\r\n"
    )
    report = parse_report(raw, verp=verp)
    assert report.kind is ReportKind.UNRECOGNISED
    assert report.events == ()


def test_envelope_recipient_names_the_email(verp: Verp) -> None:
    # Over SMTP the RCPT TO address is known even when no header repeats it.
    raw = sample("microsoft_recipient_not_found.eml")
    report = parse_report(raw, verp=verp, envelope_recipients=[verp.address(77)])
    assert report.email_id == 77
    assert report.events[0].email_id == 77


def test_forged_verp_is_passed_over_and_reported(verp: Verp) -> None:
    forged = Verp.from_secret("bounces.example.com", "someone-else").address(4244)
    raw = sample("postfix_user_unknown.eml").replace(verp.address(4244).encode(), forged.encode())
    report = parse_report(raw, verp=verp, envelope_recipients=[forged])
    assert report.forged_verp
    assert report.email_id is None
    assert report.events[0].email_id is None
    assert report.events[0].message_id == ours(4244)  # still matchable by Message-ID


def test_envid_carrying_a_verp_token(verp: Verp) -> None:
    raw = sample("microsoft_recipient_not_found.eml").replace(
        b"Reporting-MTA: dns;CY4PR01MB5678",
        f"Original-Envelope-Id: {verp.token(99)}\nReporting-MTA: dns;CY4PR01MB5678".encode(),
    )
    assert parse_report(raw, verp=verp).email_id == 99


def test_the_same_dsn_twice_has_the_same_dedup_key(verp: Verp) -> None:
    first = parse_report(sample("postfix_user_unknown.eml"), verp=verp).events[0]
    again = parse_report(sample("postfix_user_unknown.eml"), verp=verp).events[0]
    other = parse_report(sample("gmail_user_unknown.eml"), verp=verp).events[0]
    assert first.dedup_key == again.dedup_key
    assert first.dedup_key != other.dedup_key


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00\xff\xfe garbage",
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=x\r\n\r\n--x\r\n",
        b"Content-Type: multipart/report; boundary=x\r\n\r\n--x\r\nContent-Type: "
        b"message/delivery-status\r\n\r\nAction: failed\r\nStatus: 9.9\r\n--x--\r\n",
        b"From: MAILER-DAEMON@x\r\nSubject: =?bogus?Q?x?=\r\nContent-Type: text/plain; "
        b"charset=no-such-charset\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!notbase64\r\n",
    ],
)
def test_hostile_input_never_raises(verp: Verp, raw: bytes) -> None:
    report = parse_report(raw, verp=verp)
    assert report.kind in set(ReportKind)


def test_postfix_sender_field_names_the_email(verp: Verp) -> None:
    # Forwarded by hand, the DSN lost the VERP recipient headers; X-Postfix-Sender keeps it.
    raw = sample("postfix_delayed.eml").replace(
        f"To: {verp.address(4245)}".encode(), b"To: ops-team@shop.example.com"
    )
    assert parse_report(raw, verp=verp).email_id == 4245
