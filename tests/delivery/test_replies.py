"""SMTP replies: the code decides, provider quirks override it, "no such user" suppresses."""

from __future__ import annotations

import pytest

from mailq.delivery.replies import BUILTIN_QUIRKS, PERMANENT, TRANSIENT, Quirk, classify


@pytest.mark.parametrize(
    ("code", "reply", "permanent", "suppress"),
    [
        (451, "4.3.0 try again later", False, False),
        (421, "4.7.0 too many connections", False, False),
        (552, "5.2.2 mailbox full", True, False),
        (550, "5.1.1 no such user here", True, True),
        (550, "Requested action not taken: mailbox unavailable", True, True),
        (553, "sorry, user unknown", True, True),
        # Provider quirks that override the class:
        (454, "Throttling failure: Maximum sending rate exceeded.", False, False),
        (550, "5.4.5 Daily SMTP relay limit exceeded for user", False, False),
        (451, "4.7.1 Recipient address on suppression list", True, False),
    ],
)
def test_replies_are_classified(code: int, reply: str, permanent: bool, suppress: bool) -> None:
    failure = classify(code, reply)
    assert failure.permanent is permanent
    assert failure.suppress is suppress
    assert (failure.smtp_code, failure.smtp_reply) == (code, reply)


def test_configured_quirks_come_first() -> None:
    quirks = (Quirk(TRANSIENT, code=552, match="mailbox full"), *BUILTIN_QUIRKS)
    assert classify(552, "5.2.2 mailbox full", quirks).permanent is False
    bounce = (Quirk(PERMANENT, enhanced="4.2.2", suppress=True),)
    failure = classify(452, "4.2.2 over quota forever", bounce)
    assert failure.permanent and failure.suppress
