"""The emails the bench queues: welcome emails with a templated subject and body, as the
system mailq replaces sends them. Each is rendered and written as MIME at send time."""

from __future__ import annotations

import itertools

from mailq.enqueue import build_rows
from mailq.models import Email

SUBJECT = "Welcome to the platform, {{ name }}"
TEXT = (
    "Hello {{ name }},\n\n"
    "thank you for signing up. Your account {{ account }} is ready: sign in at any time to\n"
    "build your portfolio, and reply to this email if anything is unclear.\n\n"
    "The team\n"
)


def email(n: int) -> Email:
    return Email(
        to=f"user{n}@example.com",
        kind="welcome",
        subject=SUBJECT,
        text=TEXT,
        context={"name": f"User {n}", "account": f"acct-{n:08d}"},
        metadata={"user_id": n},
    )


# Every email of a run goes to a new recipient, as a campaign's do: an address seen before
# (validation caches its verdict) would make enqueue look faster than it is.
_next_recipient = itertools.count()


def emails(count: int) -> list[Email]:
    return [email(next(_next_recipient)) for _ in range(count)]


def payload() -> str:
    """The JSON content one of these emails is stored with: the bare loop's job payload."""
    return build_rows([email(0)])[0].content
