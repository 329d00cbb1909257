"""What a bounce's status code and text say: hard or soft, and whether the refusal is about the
recipient or about the sender.

RFC 3463 gives the frame: the class digit (`5.x.x` permanent → hard, `4.x.x` transient →
soft), the subject digit (`x.1.x` addressing, `x.2.x` mailbox, `x.7.x` security or policy).
Providers bend it, so a few rules refine the class:

- `X.7.x` (authentication, reputation, policy: Gmail `5.7.26` unauthenticated, `5.7.25` no
  PTR, `5.7.28` spam rate, `5.7.29` no TLS, Microsoft `5.7.515` missing SPF/DKIM/DMARC,
  `4.7.x` throttling and greylisting), the sender's own address (`X.1.7`, `X.1.8`), the
  message itself (`X.3.4` too big, `X.6.x` content) and `X.4.5` congestion are about the
  sender: `sender_side`, never a reason to suppress the recipient.
- A full mailbox (`5.2.2`), a full or unavailable receiving system (`5.3.x`) and routing
  trouble that passes (`5.4.2`, `5.4.3`, `5.4.6`, `5.4.7`) are soft even in class 5.
- A generic status (`5.0.0`, or none) is refined from the diagnostic text: its own enhanced
  code, else its SMTP reply code, else wordings ("user unknown", "mailbox full", "blocked
  using ..."); with nothing to go on, the default is soft (three soft bounces suppress; a wrong
  hard one would suppress at once).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mailq.bounces.events import Subtype

_ENHANCED = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.]*\d)")
_FAILURE = re.compile(r"(?<![\d.])([45])\.(\d{1,3})\.(\d{1,3})(?![\d.]*\d)")
_REPLY = re.compile(r"(?<![\d.])([45])\d\d(?=[\s-])")

# Recipient-side statuses of class 5 that may pass: soft.
_SOFT_PERMANENT = frozenset(
    {"5.2.2", "5.3.0", "5.3.1", "5.3.2", "5.3.3", "5.3.5", "5.4.2", "5.4.3", "5.4.6", "5.4.7"}
)
# Statuses outside X.7.x that are about the sender or the message.
_SENDER_SIDE = frozenset({"1.7", "1.8", "3.4", "4.5"})
# X.7.x statuses that are about the recipient after all: X.7.13 "user account disabled".
_RECIPIENT_POLICY = frozenset({"7.13"})

_SENDER_WORDS = re.compile(
    r"spamhaus|barracuda|spamcop|block ?list|black ?list|blocked using|listed (at|in|on)|"
    r"\brbl\b|\bdnsbl\b|reputation|unauthenticated|not authenticated|\bdmarc\b|\bspf\b|"
    r"\bdkim\b|\bptr\b|reverse dns|rate limit|too many (messages|connections)|throttl|"
    r"unsolicited|likely spam|spam content|message content|policy reasons",
    re.IGNORECASE,
)
_HARD_WORDS = re.compile(
    r"no such (user|mailbox|recipient|address)|user unknown|unknown (user|recipient)|"
    r"mailbox (not found|unavailable|does not exist)|does not exist|recipient not found|"
    r"address rejected|invalid (recipient|mailbox|address)|no mailbox|account (has been )?"
    r"disabled|address (is )?not valid|domain not found|host or domain name not found",
    re.IGNORECASE,
)
_SOFT_WORDS = re.compile(
    r"mailbox (is )?full|over quota|quota exceeded|insufficient (system )?storage|"
    r"try again later|temporar(il)?y",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class Classification:
    """`status` is the most specific enhanced code found (None when there is none)."""

    subtype: Subtype
    status: str | None
    sender_side: bool


def find_status(text: str | None, *, failures_only: bool = False) -> str | None:
    """The first RFC 3463 enhanced status code in `text` (`550 5.1.1 <a@b>...` → `5.1.1`);
    with `failures_only`, the first of class 4 or 5."""
    if not text:
        return None
    match = (_FAILURE if failures_only else _ENHANCED).search(text)
    return ".".join(match.groups()) if match else None


def normalize_status(value: object) -> str | None:
    """A DSN `Status` field reduced to its code (`5.1.1 (user unknown)` → `5.1.1`)."""
    return find_status(value) if isinstance(value, str) else None


def _generic(status: str | None) -> bool:
    return status is None or status.endswith(".0.0")


def is_sender_side(status: str | None, text: str | None = None) -> bool:
    """A refusal about the sender or the message rather than the recipient."""
    if status is not None:
        _, subject, detail = status.split(".")
        pair = f"{subject}.{detail}"
        if subject == "7":
            return pair not in _RECIPIENT_POLICY
        if subject == "6" or pair in _SENDER_SIDE:
            return True
        if not _generic(status):
            return False
    return bool(text) and _SENDER_WORDS.search(text or "") is not None


def classify(status: str | None, diagnostic: str | None = None) -> Classification:
    """Hard or soft, and sender-side or not, from a DSN `Status` and its diagnostic text."""
    code = normalize_status(status)
    if _generic(code):
        found = find_status(diagnostic, failures_only=True)
        if found is not None and (code is None or found[0] == code[0]):
            code = found
    klass = code[0] if code else None
    if klass is None and diagnostic:
        reply = _REPLY.search(diagnostic)
        klass = reply.group(1) if reply else None
    sender_side = is_sender_side(code, diagnostic)
    return Classification(
        subtype=_subtype(code, klass, diagnostic or "", sender_side),
        status=code,
        sender_side=sender_side,
    )


def _subtype(code: str | None, klass: str | None, text: str, sender_side: bool) -> Subtype:
    if code in _SOFT_PERMANENT:
        return Subtype.SOFT
    if klass == "5":
        return Subtype.HARD
    if klass == "4" or _SOFT_WORDS.search(text):
        return Subtype.SOFT
    if _HARD_WORDS.search(text) and not sender_side:
        return Subtype.HARD
    return Subtype.SOFT
