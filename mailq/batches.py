"""Many emails checked at once: the checks of what emails share are made once per batch.

In a bulk enqueue most emails differ only in their recipient, context and metadata; their
kind, sender, subject, bodies, template and extra headers are the same. The first email of
each such shape goes through every check (mailq.validation.to_row, which also makes the
per-template checks of mailq.compose.templates: syntax, compile, the trial render); the
others of that shape take the checks that depend on them alone: the recipient, the context
(checked against the same templates by the same `check_context`), priority, attempts,
times and metadata, and their content is the shape's JSON with their context spliced in.
An email with attachments always goes through every check.

Any refusal on the short path is reported by the full one, so an email is refused with the
same message whichever path saw it first.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from mailq.compose.templates import TemplateStore, check_context
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
    """What the first email of a shape was found to be: its kind's policy, the sources its
    context is checked against, its content as JSON without the context, its Message-ID
    domain."""

    policy: KindPolicy
    sources: tuple[tuple[str, str, bool], ...]
    prefix: bytes
    domain: str

    @classmethod
    def of(cls, row: EmailRow, policy: KindPolicy) -> _Shape:
        content = orjson.loads(row.content)
        del content["context"]
        sources = tuple((f, content[f], header) for f, header in _TEMPLATED if content.get(f))
        prefix = orjson.dumps(content)[:-1] + (b',"context":' if content else b'"context":')
        domain = row.message_id.rpartition("@")[2][:-1]
        return cls(policy, sources, prefix, domain)

    def row(self, email: Email, now: datetime, random_hex: str) -> EmailRow:
        """The row of another email of this shape (InvalidEmail: see the full checks)."""
        policy = self.policy
        to = email.to
        to_address, to_name = (to, None) if _plain(to) else _to_parts(to)
        context = email.context
        if type(context) is not dict and not isinstance(context, Mapping):
            raise InvalidEmail("context: must be an object")
        context = dict(context)
        for field_name, source, header in self.sources:
            check_context(field_name, source, context, header=header)
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
    emails = list(emails)
    shapes: dict[_Key, _Shape] = {}
    random_hex = os.urandom(16 * len(emails)).hex()
    rows: list[EmailRow] = []
    for index, email in enumerate(emails):
        if not isinstance(email, Email):
            raise TypeError(f"emails[{index}] is a {type(email).__name__}, not a mailq.Email")
        key = _shape_key(email)
        shape = shapes.get(key) if key is not None else None
        if shape is not None:
            try:
                rows.append(shape.row(email, now, random_hex[32 * index : 32 * index + 32]))
                continue
            except InvalidEmail:
                pass  # the full checks below name the first problem, as for any email
        row = to_row(email, default_from=default_from, kinds=kinds, now=now, templates=templates)
        if key is not None:
            shapes[key] = _Shape.of(row, check_kind(email.kind, kinds))
        rows.append(row)
    return rows
