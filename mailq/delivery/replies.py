"""What an SMTP reply means for an email: retry later, fail for good, suppress the address.

The reply code decides by default (RFC 5321: 4xx transient, 5xx permanent). Providers do
not always follow it, so a table of quirks, matched in order, overrides the class: e.g.
Amazon SES's `454 Throttling failure` is transient, Google's `550 5.4.5 Daily SMTP relay
limit exceeded` clears after a day, and a `451 ... suppression list` never succeeds.
Quirks from MAILQ_CONFIG come before the built-in ones.

A permanent "no such user" (5.1.1 and its wordings) also puts the address on the
suppression list, so it is never tried again.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from mailq.errors import PermanentFailure, RetryLater, SendFailure

TRANSIENT = "transient"
PERMANENT = "permanent"
CLASSES = (TRANSIENT, PERMANENT)

_ENHANCED = re.compile(r"^\s*([245]\.\d{1,3}\.\d{1,3})\b")
_NO_SUCH_USER = re.compile(
    r"no such (user|mailbox|recipient)|user unknown|unknown user|unknown recipient|"
    r"mailbox (not found|unavailable|does not exist)|does not exist|recipient not found|"
    r"address rejected: user|invalid recipient|no mailbox",
    re.IGNORECASE,
)
_NO_SUCH_USER_CODES = frozenset({"5.1.1", "5.1.10", "5.1.6"})


@dataclass(frozen=True, slots=True)
class Quirk:
    """One row of the provider quirks table: replies it matches get `outcome`.

    Every given condition must hold: `code` (the 3-digit reply code), `enhanced` (the
    enhanced status code, e.g. "5.4.5"), `match` (a case-insensitive regular expression
    searched in the reply text). `suppress` also adds the recipient to the suppression list.
    """

    outcome: str
    code: int | None = None
    enhanced: str | None = None
    match: str | None = None
    suppress: bool = False

    def matches(self, code: int, enhanced: str | None, text: str) -> bool:
        if self.code is not None and self.code != code:
            return False
        if self.enhanced is not None and self.enhanced != enhanced:
            return False
        return self.match is None or re.search(self.match, text, re.IGNORECASE) is not None


BUILTIN_QUIRKS: tuple[Quirk, ...] = (
    # Amazon SES: sending rate or daily quota exceeded; the message was not taken.
    Quirk(TRANSIENT, code=454, match=r"throttl|quota"),
    # Google Workspace relay: a 5xx that clears within a day.
    Quirk(TRANSIENT, enhanced="5.4.5", match=r"relay limit|rate limit|try again"),
    Quirk(TRANSIENT, code=550, match=r"daily (user )?sending (quota|limit) exceeded"),
    # A 4xx naming a suppression or block list never succeeds on retry.
    Quirk(PERMANENT, code=451, match=r"suppress"),
    Quirk(PERMANENT, code=450, match=r"suppress"),
)


def enhanced_code(text: str) -> str | None:
    """The RFC 3463 enhanced status code at the start of a reply text, if any."""
    match = _ENHANCED.match(text)
    return match.group(1) if match else None


def is_no_such_user(code: int, text: str) -> bool:
    """A permanent refusal saying the mailbox does not exist."""
    if not 500 <= code <= 599:
        return False
    if enhanced_code(text) in _NO_SUCH_USER_CODES:
        return True
    return code in {550, 551, 553} and _NO_SUCH_USER.search(text) is not None


def classify(code: int, reply: str, quirks: Sequence[Quirk] = BUILTIN_QUIRKS) -> SendFailure:
    """The failure a refusal of the `to` recipient or of the message means."""
    text = reply.strip()
    enhanced = enhanced_code(text)
    summary = f"SMTP {code} {text}".strip()
    permanent = 500 <= code <= 599
    suppress = False
    for quirk in quirks:
        if quirk.matches(code, enhanced, text):
            permanent = quirk.outcome == PERMANENT
            suppress = quirk.suppress
            break
    else:
        suppress = is_no_such_user(code, text)
    failure: SendFailure
    if permanent:
        failure = PermanentFailure(summary, smtp_code=code, smtp_reply=text)
    else:
        failure = RetryLater(summary, smtp_code=code, smtp_reply=text)
    failure.suppress = suppress and permanent
    return failure
