"""The HTTP edge's shapes: request bodies checked into rows, rows turned into responses, and
the JSON Schemas of both for /openapi.json.

Email fields are checked by mailq itself (mailq.wire.email_from_json, then
mailq.validation.to_row), so the service and the Python API refuse the same things with the
same messages; this module only adds what belongs to HTTP (batch shape, attachment size).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from mailq.addresses import Mailbox
from mailq.attachments import MAX_ATTACHMENTS, MAX_FILENAME_CHARS
from mailq.config import Config
from mailq.errors import InvalidEmail
from mailq.kinds import KindPolicy
from mailq.models import NOT_ATTEMPTED, EmailRow, EmailState, Outcome
from mailq.service.errors import ApiError
from mailq.service.schemas.events import EVENT, event_view
from mailq.service.schemas.fields import (
    ADDRESS,
    ADDRESSES,
    HEADERS,
    ID,
    KIND,
    METADATA,
    NO_NUL,
    ONE_LINE,
    TEMPLATE,
    TIMESTAMP,
)
from mailq.validation import MAX_SUBJECT_CHARS, check_kind, to_row
from mailq.wire import email_from_json

# -- requests ------------------------------------------------------------------------------


def known_kind(kind: object, kinds: Mapping[str, KindPolicy]) -> str:
    """A kind the configuration declares (mailq.validation.check_kind: the same refusal as
    the Python API and the CLI)."""
    return check_kind(kind, kinds).name


def email_row(
    data: object, *, default_from: str, attachments_limit: int, config: Config, now: datetime
) -> EmailRow:
    """One email object of the API as the row that stores it; InvalidEmail names the field."""
    if not isinstance(data, dict):
        raise InvalidEmail("body: must be a JSON object (one email)")
    email = email_from_json(data)
    known_kind(email.kind, config.kinds)
    size = sum(len(a.content) for a in email.attachments)
    if size > attachments_limit:
        raise InvalidEmail(
            f"attachments: {size} bytes in all, over the limit of {attachments_limit} bytes"
        )
    return to_row(
        email, default_from=default_from, kinds=config.kinds, templates=config.templates, now=now
    )


def single_row(
    data: object, *, default_from: str, attachments_limit: int, config: Config
) -> EmailRow:
    if not isinstance(data, dict):
        raise ApiError(400, "body: must be a JSON object (one email)")
    return email_row(
        data,
        default_from=default_from,
        attachments_limit=attachments_limit,
        config=config,
        now=_now(),
    )


def batch_rows(
    data: object, *, default_from: str, attachments_limit: int, batch_limit: int, config: Config
) -> list[EmailRow]:
    """Every email of a batch checked before any is stored (all or nothing)."""
    if not isinstance(data, dict):
        raise ApiError(400, 'body: must be a JSON object {"emails": [...]}')
    unknown = sorted(set(data) - {"emails"})
    if unknown:
        raise InvalidEmail(f"{unknown[0]}: unknown field")
    emails = data.get("emails")
    if not isinstance(emails, list) or not emails:
        raise InvalidEmail("emails: a non-empty list of emails is required")
    if len(emails) > batch_limit:
        raise InvalidEmail(
            f"emails: at most {batch_limit} emails per batch, got {len(emails)}; split it"
        )
    now = _now()
    rows = []
    for index, item in enumerate(emails):
        try:
            rows.append(
                email_row(
                    item,
                    default_from=default_from,
                    attachments_limit=attachments_limit,
                    config=config,
                    now=now,
                )
            )
        except InvalidEmail as exc:
            message = str(exc)
            if message.startswith("body: "):
                message = "must be a JSON object (one email)"
            separator = "" if message.startswith("[") else "."
            raise InvalidEmail(f"emails[{index}]{separator}{message}") from None
    return rows


def _now() -> datetime:
    return datetime.now(UTC)


def created_state(row: EmailRow, now: datetime | None = None) -> str:
    """The state of an email just queued, without asking the database."""
    if row.send_at is not None and row.send_at > (now or _now()):
        return EmailState.SCHEDULED.value
    return EmailState.QUEUED.value


def metadata_candidates(filters: Mapping[str, str]) -> list[str]:
    """The JSON objects an email's metadata must contain one of, for filters KEY=VALUE.
    A VALUE that reads as a JSON number or boolean also matches that typed value, so
    `metadata.user_id=42` finds both {"user_id": 42} and {"user_id": "42"}."""
    objects: list[dict[str, Any]] = [{}]
    for key, value in filters.items():
        alternatives: list[Any] = [value]
        try:
            typed = json.loads(value)
        except (ValueError, RecursionError):
            typed = None
        if isinstance(typed, bool) or (
            isinstance(typed, int | float) and math.isfinite(typed) and abs(typed) < 2**53
        ):
            alternatives.append(typed)
        objects = [{**o, key: alt} for o in objects for alt in alternatives]
    return [json.dumps(o, separators=(",", ":")) for o in objects]


# -- responses -----------------------------------------------------------------------------


def iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def attempt_view(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "attempt": row["attempt"],
        "outcome": row["outcome"],
        "smtp_code": row["smtp_code"],
        "smtp_reply": row["smtp_reply"],
        "error": row["error"],
        "provider_message_id": row["provider_message_id"],
        "worker_id": None if row["worker_id"] is None else str(row["worker_id"]),
        "started_at": iso(row["started_at"]),
        "finished_at": iso(row["finished_at"]),
    }


def email_summary(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "kind": row["kind"],
        "state": row["state"],
        # `to` as the mailbox given (with its display name), `to_address` the bare address.
        "to": str(Mailbox(row["to_address"], row.get("to_name"))),
        "to_address": row["to_address"],
        "message_id": row["message_id"],
        "metadata": json.loads(row["metadata"]),
        "attempt_count": row["attempts"],
        "max_attempts": row["max_attempts"],
        "last_error": row["last_error"],
        "due_at": iso(row["run_at"]),
        "send_at": iso(row["send_at"]),
        "expires_at": iso(row.get("expires_at")),
        "created_at": iso(row["created_at"]),
        "finished_at": iso(row["finished_at"]),
    }


def email_detail(
    row: Mapping[str, Any],
    attempts: Sequence[Mapping[str, Any]],
    events: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    content = json.loads(row["content"])
    view = email_summary(row)
    view.update(
        {
            "priority": row["priority"],
            "from": content.get("from"),
            "subject": content.get("subject"),
            "cc": content.get("cc") or [],
            "bcc": content.get("bcc") or [],
            "reply_to": content.get("reply_to") or [],
            "attachments": [
                {
                    "filename": a.get("filename"),
                    "content_type": a.get("content_type"),
                    **({"content_id": a["content_id"]} if a.get("content_id") else {}),
                }
                for a in content.get("attachments") or []
            ],
            "attempts": [attempt_view(a) for a in attempts],
            # What happened after the server said 250: bounces, complaints, deliveries.
            "events": [event_view(e) for e in events],
        }
    )
    return view


STATES = tuple(state.value for state in EmailState)


EMAIL: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["to"],
    "anyOf": [
        {"required": ["subject", "text"], "properties": {"text": {"minLength": 1}}},
        {"required": ["subject", "html"], "properties": {"html": {"minLength": 1}}},
        {"required": ["template"]},
    ],
    "properties": {
        "to": ADDRESS,
        "kind": KIND,
        "subject": {
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_SUBJECT_CHARS,
            "pattern": ONE_LINE,
        },
        "text": {"type": "string", "pattern": NO_NUL},
        "html": {"type": "string", "pattern": NO_NUL},
        "template": TEMPLATE,
        "context": {"type": "object"},
        "send_at": {"type": "string", "format": "date-time"},
        "expires_at": {
            "type": "string",
            "format": "date-time",
            "description": "not handed to the server by then: not sent (failed, `expired`)",
        },
        "priority": {"type": "integer", "minimum": 0, "maximum": 9},
        "cc": ADDRESSES,
        "bcc": ADDRESSES,
        "reply_to": ADDRESSES,
        "headers": HEADERS,
        "from": ADDRESS,
        "attachments": {
            "type": "array",
            "maxItems": MAX_ATTACHMENTS,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["filename", "content_type", "content_base64"],
                "properties": {
                    "filename": {
                        "type": "string",
                        "minLength": 1,
                        "maxLength": MAX_FILENAME_CHARS,
                        "pattern": ONE_LINE,
                    },
                    "content_type": {
                        "type": "string",
                        "examples": ["application/pdf", "text/csv; charset=iso-8859-1"],
                    },
                    "content_base64": {"type": "string", "contentEncoding": "base64"},
                    "content_id": {
                        "type": "string",
                        "description": "makes the file an inline part the HTML shows as "
                        '<img src="cid:CONTENT_ID">',
                        "examples": ["logo@acme"],
                    },
                },
            },
        },
        "metadata": METADATA,
    },
}


def batch_schema(limit: int) -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["emails"],
        "properties": {
            "emails": {"type": "array", "items": EMAIL, "minItems": 1, "maxItems": limit}
        },
    }


ERROR: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string"}},
}
STATE: dict[str, Any] = {"type": "string", "enum": list(STATES)}
CREATED: dict[str, Any] = {
    "type": "object",
    "required": ["id", "state"],
    "properties": {"id": ID, "state": STATE},
}
BATCH_CREATED: dict[str, Any] = {
    "type": "object",
    "required": ["ids"],
    "properties": {"ids": {"type": "array", "items": ID}},
}
EMAIL_SUMMARY: dict[str, Any] = {
    "type": "object",
    "required": ["id", "kind", "state", "to", "message_id", "metadata"],
    "properties": {
        "id": ID,
        "kind": {"type": "string"},
        "state": STATE,
        "to": {"type": "string", "description": "the mailbox as given"},
        "to_address": {"type": "string", "description": "the bare address"},
        "message_id": {"type": "string"},
        "metadata": {"type": "object"},
        "attempt_count": {"type": "integer"},
        "max_attempts": {"type": ["integer", "null"]},
        "last_error": {"type": ["string", "null"]},
        "due_at": TIMESTAMP,
        "send_at": TIMESTAMP,
        "expires_at": TIMESTAMP,
        "created_at": TIMESTAMP,
        "finished_at": TIMESTAMP,
    },
}
ATTEMPT: dict[str, Any] = {
    "type": "object",
    "required": ["attempt", "outcome"],
    "properties": {
        "attempt": {"type": "integer"},
        # Outcomes that are not attempts (cancelled, expired, released) write no attempt row.
        "outcome": {
            "type": "string",
            "enum": [o.value for o in Outcome if o not in NOT_ATTEMPTED],
        },
        "smtp_code": {"type": ["integer", "null"]},
        "smtp_reply": {"type": ["string", "null"]},
        "error": {"type": ["string", "null"]},
        # The ESP's id of the message (HTTP backends), which its webhooks name.
        "provider_message_id": {"type": ["string", "null"]},
        "worker_id": {"type": ["string", "null"]},
        "started_at": TIMESTAMP,
        "finished_at": TIMESTAMP,
    },
}
EMAIL_DETAIL: dict[str, Any] = {
    **EMAIL_SUMMARY,
    "required": [*EMAIL_SUMMARY["required"], "attempts"],
    "properties": {
        **EMAIL_SUMMARY["properties"],
        "priority": {"type": "integer"},
        "from": {"type": ["string", "null"]},
        "subject": {"type": ["string", "null"]},
        "cc": {"type": "array", "items": {"type": "string"}},
        "bcc": {"type": "array", "items": {"type": "string"}},
        "reply_to": {"type": "array", "items": {"type": "string"}},
        "attachments": {"type": "array", "items": {"type": "object"}},
        "attempts": {"type": "array", "items": ATTEMPT},
        "events": {"type": "array", "items": EVENT},
    },
}
EMAIL_LIST: dict[str, Any] = {
    "type": "object",
    "required": ["emails", "next_before_id"],
    "properties": {
        "emails": {"type": "array", "items": EMAIL_SUMMARY},
        "next_before_id": {"type": ["integer", "null"]},
    },
}
