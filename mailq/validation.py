"""Checks an email before it is queued and turns it into the row that stores it.

Every refusal is an InvalidEmail whose message starts with the field it is about.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import orjson

from mailq.addresses import (
    AddressError,
    Mailbox,
    is_plain_address,
    message_id_domain,
    new_message_id,
    parse_mailbox,
)
from mailq.attachments import check_attachments
from mailq.compose.templates import DEFAULT_TEMPLATES, TemplateStore, check_context
from mailq.errors import InvalidEmail, quoted
from mailq.kinds import BUILTIN_KINDS, KIND_NAME, MAX_ATTEMPTS_LIMIT, KindPolicy
from mailq.models import Email, EmailRow

# Any C0 control character or DEL; TAB is allowed in text bodies but not in headers.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_HEADER_NAME = re.compile(r"^[!-9;-~]{1,76}$")
_RESERVED_HEADERS = frozenset(
    {
        "from",
        "to",
        "cc",
        "bcc",
        "subject",
        "message-id",
        "date",
        "mime-version",
        "content-type",
        "content-transfer-encoding",
        "reply-to",
        "x-mailq-original-to",
        "dkim-signature",
    }
)
MAX_SCHEDULE_AHEAD = timedelta(days=3660)
MAX_SUBJECT_CHARS = 998
MAX_RECIPIENTS = 100
# Metadata integers: what a signed 64-bit integer holds (jsonb and the JSON encoder agree).
METADATA_INT_MIN, METADATA_INT_MAX = -(2**63), 2**63 - 1


def check_mailbox(field: str, value: object) -> Mailbox:
    """A bare address or `Name <address>` (mailq.addresses); InvalidEmail names the field."""
    if not isinstance(value, str) or not value:
        raise InvalidEmail(f"{field}: an email address is required")
    try:
        return parse_mailbox(value)
    except AddressError as exc:
        raise InvalidEmail(
            f"{field}: {quoted(value)} is not a valid email address ({exc})"
        ) from None


def _plain(value: object) -> bool:
    return isinstance(value, str) and is_plain_address(value)


def _to_parts(value: object) -> tuple[str, str | None]:
    mailbox = check_mailbox("to", value)
    return mailbox.address, mailbox.name


@lru_cache(maxsize=1024)
def _sender(value: str) -> str:
    """The stored form of a From mailbox (checked once per distinct value: most emails share
    MAILQ_FROM or their kind's)."""
    return str(check_mailbox("from", value))


@lru_cache(maxsize=1024)
def _sender_domain(sender: str) -> str:
    return message_id_domain(parse_mailbox(sender).address)


def check_address(field: str, address: object) -> str:
    """The bare address of a mailbox (what is matched: suppression, de-duplication)."""
    return check_mailbox(field, address).address


def _check_addresses(field: str, addresses: Sequence[str]) -> list[str]:
    if isinstance(addresses, str):
        raise InvalidEmail(f"{field}: must be a list of addresses")
    if len(addresses) > MAX_RECIPIENTS:
        raise InvalidEmail(f"{field}: at most {MAX_RECIPIENTS} addresses")
    return [str(check_mailbox(f"{field}[{i}]", a)) for i, a in enumerate(addresses)]


def _check_text(field: str, value: object, *, header: bool) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidEmail(f"{field}: must be a string")
    if "\x00" in value:
        raise InvalidEmail(f"{field}: NUL characters are not allowed")
    if header and _CONTROL.search(value):
        raise InvalidEmail(f"{field}: control characters (CR, LF, ...) are not allowed")
    return value


def check_send_at(send_at: object, now: datetime) -> datetime | None:
    if send_at is None:
        return None
    if not isinstance(send_at, datetime):
        raise InvalidEmail("send_at: must be a datetime")
    if send_at.tzinfo is None or send_at.utcoffset() is None:
        raise InvalidEmail("send_at: must carry a time zone offset")
    if send_at - now > MAX_SCHEDULE_AHEAD:
        raise InvalidEmail("send_at: more than 10 years ahead")
    if send_at.year < 1970:
        raise InvalidEmail("send_at: before 1970")
    return send_at


def check_expires_at(
    expires_at: object, now: datetime, send_at: datetime | None = None
) -> datetime | None:
    """An email's (or a campaign's) expiry: aware, in the future, after its send_at."""
    if expires_at is None:
        return None
    if not isinstance(expires_at, datetime):
        raise InvalidEmail("expires_at: must be a datetime")
    if expires_at.tzinfo is None or expires_at.utcoffset() is None:
        raise InvalidEmail("expires_at: must carry a time zone offset")
    if expires_at <= now:
        raise InvalidEmail("expires_at: already past")
    if send_at is not None and expires_at <= send_at:
        raise InvalidEmail("expires_at: must be after send_at")
    if expires_at - now > MAX_SCHEDULE_AHEAD:
        raise InvalidEmail("expires_at: more than 10 years ahead")
    return expires_at


def _check_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    if type(metadata) is dict and all(map(_plain_metadata_item, metadata.items())):
        return metadata  # strings and 64-bit integers under plain keys: the common case
    if not isinstance(metadata, Mapping):
        raise InvalidEmail("metadata: must be a flat object")
    flat: dict[str, Any] = {}
    for key, value in metadata.items():
        if not isinstance(key, str) or not key or _CONTROL.search(key):
            raise InvalidEmail("metadata: keys must be non-empty strings")
        if value is not None and not isinstance(value, str | int | float | bool):
            raise InvalidEmail(f"metadata.{key}: values must be strings, numbers or booleans")
        if isinstance(value, str) and "\x00" in value:
            raise InvalidEmail(f"metadata.{key}: NUL characters are not allowed")
        if isinstance(value, int) and not isinstance(value, bool):
            if not METADATA_INT_MIN <= value <= METADATA_INT_MAX:
                raise InvalidEmail(f"metadata.{key}: integers are 64-bit (from -2**63 to 2**63-1)")
        elif isinstance(value, float) and not math.isfinite(value):
            raise InvalidEmail(f"metadata.{key}: numbers must be finite (not NaN or infinity)")
        flat[key] = value
    return flat


def _plain_metadata_item(item: tuple[object, object]) -> bool:
    key, value = item
    if type(key) is not str or not key or _CONTROL.search(key):
        return False
    if type(value) is str:
        return "\x00" not in value
    return type(value) is int and METADATA_INT_MIN <= value <= METADATA_INT_MAX


def _check_headers(headers: Mapping[str, str]) -> dict[str, str]:
    if not isinstance(headers, Mapping):
        raise InvalidEmail("headers: must be an object of name: value")
    checked: dict[str, str] = {}
    for name, value in headers.items():
        if not isinstance(name, str) or not _HEADER_NAME.match(name):
            raise InvalidEmail(f"headers: {quoted(name)} is not a valid header name")
        if name.lower() in _RESERVED_HEADERS:
            raise InvalidEmail(f"headers.{name}: set this header through its own field")
        text = _check_text(f"headers.{name}", value, header=True)
        checked[name] = text or ""
    return checked


def check_kind(kind: object, kinds: Mapping[str, KindPolicy] = BUILTIN_KINDS) -> KindPolicy:
    """The policy of a kind that is built in or declared in MAILQ_CONFIG. Any other kind is
    refused (no worker would claim its emails: they would wait forever)."""
    if not isinstance(kind, str) or not KIND_NAME.match(kind):
        raise InvalidEmail(f"kind: {quoted(kind)} is not a kind name (lowercase, digits, _)")
    policy = kinds.get(kind)
    if policy is None:
        raise InvalidEmail(unknown_kind_message(kind, kinds))
    return policy


def unknown_kind_message(kind: str, kinds: Mapping[str, KindPolicy]) -> str:
    """The one message every entry point refuses an undeclared kind with."""
    return (
        f"kind: {kind!r} is not a configured kind (known: {', '.join(sorted(kinds))}); "
        f"declare it in MAILQ_CONFIG as [kinds.{kind}]"
    )


def check_priority(priority: object, policy: KindPolicy) -> int:
    priority = policy.priority if priority is None else priority
    if isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= 9:
        raise InvalidEmail("priority: must be a whole number from 0 to 9")
    return priority


def check_max_attempts(max_attempts: object, policy: KindPolicy) -> int | None:
    """The cap on attempts (the kind's when not given); None: no cap (retry_for decides)."""
    max_attempts = policy.max_attempts if max_attempts is None else max_attempts
    if max_attempts is None:
        return None
    if (
        isinstance(max_attempts, bool)
        or not isinstance(max_attempts, int)
        or not 1 <= max_attempts <= MAX_ATTEMPTS_LIMIT
    ):
        raise InvalidEmail(f"max_attempts: must be a whole number from 1 to {MAX_ATTEMPTS_LIMIT}")
    return max_attempts


def build_content(
    email: Email,
    policy: KindPolicy,
    *,
    default_from: str,
    templates: TemplateStore = DEFAULT_TEMPLATES,
    per_recipient: bool = False,
) -> dict[str, Any]:
    """Check an email's content and resolve its template; the `content` column's value.

    Content comes inline (subject, text, html), from the named `template`, or, when the
    email gives neither, from its kind's template; inline fields override a template's.
    With `per_recipient` (a campaign's shared content), variables the context lacks are
    allowed: each recipient's context is checked for them (mailq.campaigns)."""
    # The email's own `from`, else its kind's (MAILQ_CONFIG [kinds.X] from), else MAILQ_FROM.
    sender = _sender(email.from_address or policy.from_address or default_from)
    template_name, subject, text, html = _resolve_template(email, policy, templates)
    context = dict(email.context) if isinstance(email.context, Mapping) else None
    if context is None:
        raise InvalidEmail("context: must be an object")
    for field_name, source in (("subject", subject), ("text", text), ("html", html)):
        if source:
            check_context(
                field_name,
                source,
                context,
                header=field_name == "subject",
                partial=per_recipient,
            )
    attachments = check_attachments(email.attachments, html=bool(html)) if email.attachments else []
    return {
        "template": template_name,
        "from": sender,
        "subject": subject,
        "text": text,
        "html": html,
        "context": context,
        "cc": _check_addresses("cc", email.cc),
        "bcc": _check_addresses("bcc", email.bcc),
        "reply_to": _check_addresses("reply_to", email.reply_to),
        "headers": _check_headers(email.headers),
        "attachments": attachments,
    }


def _resolve_template(
    email: Email, policy: KindPolicy, templates: TemplateStore
) -> tuple[str | None, str, str | None, str | None]:
    """The template's name (None: inline content only), and the subject, text and html the
    email is rendered from: its own fields over those of its template (or its kind's)."""
    subject = _check_text("subject", email.subject, header=True)
    text = _check_text("text", email.text, header=False)
    html = _check_text("html", email.html, header=False)
    if subject is not None and len(subject) > MAX_SUBJECT_CHARS:
        raise InvalidEmail(f"subject: longer than {MAX_SUBJECT_CHARS} characters")
    template_name = email.template
    if template_name is None and not (subject or text or html):
        template_name = policy.template
    if template_name is not None:
        named = templates.get(template_name)
        subject = subject or named.subject
        if not (text or html):
            text, html = named.text, named.html
        if _CONTROL.search(subject):
            raise InvalidEmail(f"template: the subject of {template_name!r} must be one line")
    if not subject:
        raise InvalidEmail("subject: required (or a template)")
    if not text and not html:
        raise InvalidEmail("text: text or html is required")
    return template_name, subject, text, html


def content_json(content: Mapping[str, Any]) -> str:
    try:
        text = orjson.dumps(content).decode()
    except TypeError as exc:
        raise InvalidEmail(f"context: values must be JSON ({exc})") from None
    if "\\u0000" in text:
        raise InvalidEmail("context: NUL characters are not allowed")
    return text


def to_row(
    email: Email,
    *,
    default_from: str,
    kinds: Mapping[str, KindPolicy] = BUILTIN_KINDS,
    now: datetime | None = None,
    templates: TemplateStore = DEFAULT_TEMPLATES,
) -> EmailRow:
    """Validate one email and build its row; raises InvalidEmail naming the field."""
    now = now or datetime.now(UTC)
    policy = check_kind(email.kind, kinds)
    to = email.to
    # The plain path (a bare address, the common case) without building a Mailbox.
    to_address, to_name = (to, None) if _plain(to) else _to_parts(to)
    content = build_content(email, policy, default_from=default_from, templates=templates)
    priority = check_priority(email.priority, policy)
    max_attempts = check_max_attempts(email.max_attempts, policy)
    content_text = content_json(content)
    send_at = check_send_at(email.send_at, now)
    return EmailRow(
        kind=email.kind,
        priority=priority,
        send_at=send_at,
        max_attempts=max_attempts,
        to_address=to_address,
        message_id=new_message_id(_sender_domain(content["from"])),
        content=content_text,
        metadata=orjson.dumps(_check_metadata(email.metadata)).decode(),
        to_name=to_name,
        expires_at=check_expires_at(email.expires_at, now, send_at),
    )
