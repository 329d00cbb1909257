"""A batch checked per shape gives the rows, and the refusals, of checking each email alone."""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from datetime import UTC, datetime, timedelta

import pytest

from mailq import Email, InvalidEmail
from mailq.addresses import new_message_id
from mailq.batches import rows_of
from mailq.compose.templates import DEFAULT_TEMPLATES
from mailq.kinds import BUILTIN_KINDS
from mailq.models import EmailRow
from mailq.validation import to_row

NOW = datetime(2030, 1, 1, tzinfo=UTC)
SUBJECT = "Hello {{ name }}"
TEXT = "Dear {{ name }}, your code is {{ code }}."
CONTEXT = {"name": "x", "code": 1}


def checked_alone(email: Email) -> dict[str, object]:
    return comparable(
        to_row(email, default_from="Team <team@example.com>", kinds=BUILTIN_KINDS, now=NOW)
    )


def comparable(row: object) -> dict[str, object]:
    fields = asdict(row)  # type: ignore[call-overload]
    fields["content"] = json.loads(fields["content"])
    fields["metadata"] = json.loads(fields["metadata"])
    fields["message_id"] = fields["message_id"].rpartition("@")[2]  # random before the @
    return fields


def checked_together(emails: list[Email]) -> list[EmailRow]:
    return rows_of(
        emails,
        default_from="Team <team@example.com>",
        kinds=BUILTIN_KINDS,
        templates=DEFAULT_TEMPLATES,
        now=NOW,
    )


def batch(emails: list[Email]) -> list[dict[str, object]]:
    return [comparable(r) for r in checked_together(emails)]


def test_each_row_is_the_one_the_email_gets_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    def shaped(n: int, **fields: object) -> Email:
        base: dict[str, object] = {
            "to": f"user{n}@example.com",
            "subject": SUBJECT,
            "text": TEXT,
            "context": {"name": f"User {n}", "code": n},
        }
        return Email(**{**base, **fields})  # type: ignore[arg-type]

    emails = [
        shaped(0),
        shaped(1, metadata={"user_id": 1}),
        shaped(2, to="Zoë Example <zoe@example.com>", priority=3, max_attempts=4),
        shaped(3, send_at=NOW + timedelta(hours=1), expires_at=NOW + timedelta(days=1)),
        shaped(4, headers={"X-Tag": "a"}, cc=["cc@example.com"]),
        shaped(5, headers={"X-Tag": "a"}, cc=["cc@example.com"], metadata={"k": "v"}),
        Email(to="new@example.com", kind="search_engine", context={"name": "N"}),
        Email(to="new2@example.com", kind="search_engine", context={"name": "M"}),
    ]
    full = []

    def counted(email: Email, **kwargs: object) -> object:
        full.append(email)
        return to_row(email, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr("mailq.batches.to_row", counted)
    messages = {e.message_id for e in rows_of(emails, **_args())}  # type: ignore[arg-type]
    assert len(messages) == len(emails)
    assert len(full) == 3, "every check once per shape: the plain one, with headers, by kind"
    assert batch(emails) == [checked_alone(e) for e in emails]


def _args() -> dict[str, object]:
    return {
        "default_from": "Team <team@example.com>",
        "kinds": BUILTIN_KINDS,
        "templates": DEFAULT_TEMPLATES,
        "now": NOW,
    }


@pytest.mark.parametrize(
    "second",
    [
        Email(to="bad address", subject=SUBJECT, text=TEXT, context={"name": "x", "code": 1}),
        Email(to="b@example.com", subject=SUBJECT, text=TEXT, context={"name": "x"}),
        Email(to="b@example.com", subject=SUBJECT, text=TEXT, context={"name": "a\nb", "code": 1}),
        Email(to="b@example.com", subject=SUBJECT, text=TEXT, context={"name": 1, "code": {1}}),
        Email(
            to="b@example.com",
            subject=SUBJECT,
            text=TEXT,
            context={"name": "x", "code": 1},
            metadata={"deep": {"no": 1}},
        ),
        Email(
            to="b@example.com",
            subject=SUBJECT,
            text=TEXT,
            context={"name": "x", "code": 1},
            priority=11,
        ),
        # Where a first email had none: a value of the wrong type is still refused.
        Email(to="b@example.com", subject=SUBJECT, text=TEXT, context=CONTEXT, headers=None),  # type: ignore[arg-type]
        Email(to="b@example.com", subject=SUBJECT, text=TEXT, context=CONTEXT, cc="x@example.com"),
    ],
)
def test_a_refusal_after_the_first_of_its_shape_is_the_one_it_gets_alone(second: Email) -> None:
    first = Email(to="a@example.com", subject=SUBJECT, text=TEXT, context={"name": "a", "code": 1})
    with pytest.raises(InvalidEmail) as alone:
        checked_alone(second)
    with pytest.raises(InvalidEmail) as together:
        rows_of([first, second], **_args())  # type: ignore[arg-type]
    assert str(together.value) == str(alone.value)


def test_the_message_ids_of_a_batch_begin_with_the_clock_as_those_of_an_email_alone() -> None:
    """The sent emails' Message-ID index takes a batch into a few adjacent pages only if
    its ids are in clock order (mailq.addresses): a bulk enqueue's as much as any."""
    before = new_message_id("example.com")
    emails = [
        Email(to=f"user{n}@example.com", subject=SUBJECT, text=TEXT, context=CONTEXT)
        for n in range(3000)
    ]
    rows = checked_together(emails)
    after = new_message_id("example.com")
    ids = [r.message_id for r in rows]
    assert all(re.fullmatch(r"<[0-9a-f]{32}@example\.com>", i) for i in ids)
    assert len(set(ids)) == 3000
    clocks = [i[1:14] for i in ids]
    assert before[1:14] <= min(clocks) and max(clocks) <= after[1:14]
    # One clock reading per 1,024 emails (the first is checked alone and reads its own).
    assert len(set(clocks)) <= 5
