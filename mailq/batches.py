"""Many emails checked at once: the checks of what emails share are made once per batch.

In a bulk enqueue most emails differ only in their recipient, context and metadata; their
kind, sender, subject, bodies, template and extra headers are the same. The first email of
each such shape goes through every check (mailq.validation.to_row, which also makes the
per-template checks of mailq.compose.templates: syntax, compile, the trial render); the
others of that shape take the checks that depend on them alone: the recipient, the context
(against the variables the shape's templates use, found once, and for the subject the
control characters of `check_context`), priority, attempts, times and metadata, and their
content is the shape's JSON with their context spliced in. An email with attachments
always goes through every check.

Any refusal on the short path is reported by the full one, so an email is refused with the
same message whichever path saw it first.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from mailq.addresses import message_id_hexes
from mailq.compose.templates import PROVIDED_VARIABLES, TemplateStore, variables_of
from mailq.errors import InvalidEmail
from mailq.kinds import KindPolicy
from mailq.models import Email, EmailRow
from mailq.validation import (
    _check_metadata,
    _plain,
    _to_parts,
    check_expires_at,
    check_kind,
    check_max_attempts,
    check_priority,
    check_send_at,
    to_row,
)

_Key = tuple[Any, ...]
# The content fields a template may use, and whether each is a header.
_TEMPLATED = (("subject", True), ("text", False), ("html", False))
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Emails whose message ids come from one reading of the clock and one call of os.urandom.
_RANDOM_BATCH = 1024


def _shape_key(email: Email) -> _Key | None:
    """What an email shares with others of its shape; None: checked alone (attachments,
    or a field of a type only the full checks describe)."""
    if email.attachments:
        return None
    key_fields = (email.kind, email.from_address, email.subject, email.text, email.html)
    for value in (*key_fields, email.template):
        if value is not None and type(value) is not str:
            return None
    lists = (email.cc, email.bcc, email.reply_to)
    if any(type(v) is not list and type(v) is not tuple for v in lists):
        return None  # a string, say: the full checks refuse it
    if type(email.headers) is not dict:
        return None
    try:
        key = (*key_fields, email.template, *map(tuple, lists), tuple(email.headers.items()))
        hash(key)
    except TypeError:
        return None
    return key


@dataclass(frozen=True, slots=True)
class _Shape:
    """What the first email of a shape was found to be: its kind's policy, the variables its
    templates use that a context must give (all of them, and those of the subject, whose
    values must be one line), its content as JSON without the context, its Message-ID
    domain."""

    policy: KindPolicy
    needed: frozenset[str]
    one_line: frozenset[str]
    prefix: bytes
    domain: str

    @classmethod
    def of(cls, row: EmailRow, policy: KindPolicy) -> _Shape:
        content = orjson.loads(row.content)
        del content["context"]
        needed: frozenset[str] = frozenset()
        one_line: frozenset[str] = frozenset()
        for field_name, header in _TEMPLATED:
            if content.get(field_name):
                used = variables_of(content[field_name]) - PROVIDED_VARIABLES
                needed |= used
                one_line = one_line | used if header else one_line
        prefix = orjson.dumps(content)[:-1] + (b',"context":' if content else b'"context":')
        domain = row.message_id.rpartition("@")[2][:-1]
        return cls(policy, needed, one_line, prefix, domain)

    def row(self, email: Email, now: datetime, random_hex: str) -> EmailRow:
        """The row of another email of this shape (InvalidEmail: see the full checks)."""
        policy = self.policy
        to = email.to
        to_address, to_name = (to, None) if _plain(to) else _to_parts(to)
        context = email.context
        if type(context) is not dict and not isinstance(context, Mapping):
            raise InvalidEmail("context: must be an object")
        context = dict(context)
        if not self.needed <= context.keys():
            raise InvalidEmail("context: lacks a variable")  # the full checks name it
        for name in self.one_line:
            value = context[name]
            if type(value) is str and _CONTROL.search(value):
                raise InvalidEmail("context: a control character")  # the full checks name it
        try:
            context_json = orjson.dumps(context)
        except TypeError as exc:
            raise InvalidEmail(f"context: values must be JSON ({exc})") from None
        if b"\\u0000" in context_json:
            raise InvalidEmail("context: NUL characters are not allowed")
        send_at = check_send_at(email.send_at, now)
        metadata = email.metadata
        return EmailRow(
            kind=email.kind,
            priority=check_priority(email.priority, policy),
            send_at=send_at,
            max_attempts=check_max_attempts(email.max_attempts, policy),
            to_address=to_address,
            message_id=f"<{random_hex}@{self.domain}>",
            content=(self.prefix + context_json + b"}").decode(),
            metadata="{}"
            if type(metadata) is dict and not metadata
            else orjson.dumps(_check_metadata(metadata)).decode(),
            to_name=to_name,
            expires_at=check_expires_at(email.expires_at, now, send_at),
        )


def rows_of(
    emails: Iterable[Email],
    *,
    default_from: str,
    kinds: Mapping[str, KindPolicy],
    templates: TemplateStore,
    now: datetime,
) -> list[EmailRow]:
    """Check every email and build its row (mailq.validation.to_row's rows, checked per
    shape); raises at the first refusal, so that one bad email writes nothing."""
    return list(
        iter_rows(emails, default_from=default_from, kinds=kinds, templates=templates, now=now)
    )


def iter_rows(
    emails: Iterable[Email],
    *,
    default_from: str,
    kinds: Mapping[str, KindPolicy],
    templates: TemplateStore,
    now: datetime,
) -> Iterator[EmailRow]:
    """rows_of one row at a time, each checked as it is taken (a bulk enqueue writes rows
    while the next ones are checked); raises at the first refusal."""
    shapes: dict[_Key, _Shape] = {}
    last: tuple[Email | None, _Key | None] = (None, None)
    random_hex = ""
    for index, email in enumerate(emails):
        if not isinstance(email, Email):
            raise TypeError(f"emails[{index}] is a {type(email).__name__}, not a mailq.Email")
        offset = 32 * (index % _RANDOM_BATCH)
        if not offset:
            # Clock first (mailq.addresses), as every Message-ID mailq makes: the sent emails'
            # index then takes each batch into a few adjacent pages, not one page per email.
            random_hex = message_id_hexes(_RANDOM_BATCH)
        same = last[1] is not None and _same_shape(email, last[0])
        key = last[1] if same else _shape_key(email)
        last = (email, key)
        shape = shapes.get(key) if key is not None else None
        if shape is not None:
            try:
                yield shape.row(email, now, random_hex[offset : offset + 32])
                continue
            except InvalidEmail:
                pass  # the full checks below name the first problem, as for any email
        row = to_row(email, default_from=default_from, kinds=kinds, now=now, templates=templates)
        if key is not None:
            shapes[key] = _Shape.of(row, check_kind(email.kind, kinds))
        yield row


def _same_shape(email: Email, previous: Email | None) -> bool:
    """Whether an email has the shape of the one before it without computing its key: the
    same string objects (emails made in a loop from the same values), and no cc, bcc,
    reply_to, headers or attachments (what is mutable is compared by its key)."""
    return (
        previous is not None
        and email.kind is previous.kind
        and email.from_address is previous.from_address
        and email.subject is previous.subject
        and email.text is previous.text
        and email.html is previous.html
        and email.template is previous.template
        and _empty(email.cc)
        and _empty(email.bcc)
        and _empty(email.reply_to)
        and type(email.headers) is dict
        and not email.headers
        and not email.attachments
        and _empty(previous.cc)
        and _empty(previous.bcc)
        and _empty(previous.reply_to)
        and type(previous.headers) is dict
        and not previous.headers
    )


def _empty(addresses: object) -> bool:
    return (type(addresses) is tuple or type(addresses) is list) and not addresses
