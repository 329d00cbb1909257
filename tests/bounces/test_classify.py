"""Hard or soft, sender-side or not, from DSN statuses and diagnostic texts.

The diagnostics are real wordings: Gmail's and Microsoft's published codes
(https://support.google.com/a/answer/3726730, https://learn.microsoft.com/en-us/exchange/
mail-flow-best-practices/non-delivery-reports-in-exchange-online/non-delivery-reports-in-exchange-online),
Yahoo's (https://senders.yahooinc.com/smtp-error-codes/), Postfix's and RFC 3463's.
"""

from __future__ import annotations

import pytest

from mailq.bounces.classify import classify, find_status, normalize_status
from mailq.bounces.events import Subtype

HARD, SOFT = Subtype.HARD, Subtype.SOFT


@pytest.mark.parametrize(
    ("status", "diagnostic", "subtype", "code", "sender_side"),
    [
        (
            "5.1.1",
            "550 5.1.1 <a@b>: Recipient address rejected: User unknown",
            HARD,
            "5.1.1",
            False,
        ),
        ("5.1.10", "550 5.1.10 RESOLVER.ADR.RecipientNotFound", HARD, "5.1.10", False),
        (
            "5.0.0",
            "550 5.1.1 The email account that you tried to reach does not exist",
            HARD,
            "5.1.1",
            False,
        ),
        ("5.0.0", "550 user unknown", HARD, "5.0.0", False),
        ("4.0.0", "426 connection timed out", SOFT, "4.0.0", False),
        (
            "4.4.1",
            "connect to mx.example.org[192.0.2.25]:25: Connection timed out",
            SOFT,
            "4.4.1",
            False,
        ),
        (
            "5.2.2",
            "552 5.2.2 The email account that you tried to reach is over quota",
            SOFT,
            "5.2.2",
            False,
        ),
        ("5.4.4", "550 5.4.4 Host or domain name not found", HARD, "5.4.4", False),
        # Sender-side: authentication, reputation, policy, throttling, content.
        (
            "5.7.26",
            "550-5.7.26 This mail has been blocked because the sender is unauthenticated",
            HARD,
            "5.7.26",
            True,
        ),
        (
            "5.7.515",
            "550 5.7.515 Access denied, sending domain does not meet the required authentication",
            HARD,
            "5.7.515",
            True,
        ),
        (
            None,
            "550-5.7.28 There's an unusual rate of unsolicited mail originating from your IP",
            HARD,
            "5.7.28",
            True,
        ),
        (
            None,
            "550-5.7.25 The IP address sending this message does not have a PTR record",
            HARD,
            "5.7.25",
            True,
        ),
        (
            None,
            "530-5.7.29 This mail has been blocked because the sender did not use TLS",
            HARD,
            "5.7.29",
            True,
        ),
        (
            "4.7.0",
            "421-4.7.0 Try again later, closing connection. (TSS04) Messages temporarily deferred",
            SOFT,
            "4.7.0",
            True,
        ),
        (
            None,
            "421 4.7.32 Your email has been rate limited because the From: header is not aligned",
            SOFT,
            "4.7.32",
            True,
        ),
        (
            "5.0.0",
            "554 Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org",
            HARD,
            "5.0.0",
            True,
        ),
        ("5.3.4", "552 5.3.4 Message size exceeds fixed limit", HARD, "5.3.4", True),
        ("5.6.0", "550 5.6.0 Content rejected", HARD, "5.6.0", True),
        ("5.1.8", "553 5.1.8 Sender address rejected: Domain not found", HARD, "5.1.8", True),
        ("5.7.13", "525 5.7.13 User account disabled", HARD, "5.7.13", False),
        # Texts without an enhanced code.
        (None, "550 Requested action not taken: mailbox unavailable", HARD, None, False),
        (None, "452 Insufficient system storage", SOFT, None, False),
        (None, "mailbox is full", SOFT, None, False),
        (None, "no such user here", HARD, None, False),
        (None, "something odd happened", SOFT, None, False),
        (None, None, SOFT, None, False),
    ],
)
def test_classify(
    status: str | None,
    diagnostic: str | None,
    subtype: Subtype,
    code: str | None,
    sender_side: bool,
) -> None:
    found = classify(status, diagnostic)
    assert (found.subtype, found.status, found.sender_side) == (subtype, code, sender_side)


def test_find_status_ignores_addresses_versions_and_dates() -> None:
    assert find_status("host 192.0.2.25 said 550 5.1.1 nope") == "5.1.1"
    assert find_status("Postfix 3.5.25 on 4.10.2023") is None
    assert find_status("5.1.1.2 nonsense") is None
    assert find_status("ok 2.0.0 then 550 5.2.1", failures_only=True) == "5.2.1"
    assert normalize_status("5.0.0 (permanent failure)") == "5.0.0"
    assert normalize_status(None) is None
