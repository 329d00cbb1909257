"""The JSON Schemas of the fields that requests share (addresses, kinds, templates,
metadata, headers), for /openapi.json: as strict as the server where JSON Schema can say it."""

from __future__ import annotations

from typing import Any

from mailq.compose.templates import TEMPLATE_NAME
from mailq.service.openapi import KINDS_MARKER
from mailq.validation import MAX_RECIPIENTS

# What JSON Schema can say of an address (the server checks the whole syntax, RFC 5322):
# a local part of atoms, a domain of labels, optionally after a display name.
_LOCAL = r"[A-Za-z0-9_+-]{1,20}(\.[A-Za-z0-9_+-]{1,20}){0,2}"
_DOMAIN = r"([A-Za-z0-9]([A-Za-z0-9-]{0,20}[A-Za-z0-9])?\.){1,3}(com|org|net|example|test|de)"
BARE_ADDRESS = f"{_LOCAL}@{_DOMAIN}"
ADDRESS_PATTERN = f"^({BARE_ADDRESS}|[A-Za-z0-9][A-Za-z0-9 ]{{0,30}} <{BARE_ADDRESS}>)$"
ADDRESS: dict[str, Any] = {
    "type": "string",
    "maxLength": 600,
    "pattern": ADDRESS_PATTERN,
    "description": 'addr@example.com or "Display Name <addr@example.com>" (RFC 5322 mailbox; '
    "the pattern is a subset of what is accepted: quoted names, IDN domains, other TLDs too)",
    "examples": ["ann@example.com", "Ann Lee <ann@example.com>"],
}
# One line of text: no control character (CR, LF, NUL, ...).
ONE_LINE = r"^[^\x00-\x1f\x7f]*$"
# Text: no NUL.
NO_NUL = r"^[^\x00]*$"
KIND: dict[str, Any] = {"type": "string", KINDS_MARKER: True, "default": "welcome"}
TEMPLATE: dict[str, Any] = {"type": "string", "pattern": TEMPLATE_NAME.pattern}
INT64: dict[str, Any] = {"type": "integer", "minimum": -(2**63), "maximum": 2**63 - 1}
METADATA: dict[str, Any] = {
    "type": "object",
    "description": "a flat object of strings, numbers and booleans; searchable",
    "propertyNames": {"minLength": 1, "pattern": ONE_LINE},
    "additionalProperties": {
        "anyOf": [
            {"type": "string", "pattern": NO_NUL},
            INT64,
            {"type": "number", "not": {"type": "integer"}},
            {"type": "boolean"},
            {"type": "null"},
        ]
    },
}
HEADERS: dict[str, Any] = {
    "type": "object",
    "propertyNames": {"pattern": r"^[!-9;-~]{1,76}$"},
    "additionalProperties": {"type": "string", "pattern": ONE_LINE},
}
ADDRESSES: dict[str, Any] = {"type": "array", "items": ADDRESS, "maxItems": MAX_RECIPIENTS}
TIMESTAMP: dict[str, Any] = {"type": ["string", "null"], "format": "date-time"}
ID: dict[str, Any] = {"type": "integer", "minimum": 1, "maximum": 2**63 - 1}
