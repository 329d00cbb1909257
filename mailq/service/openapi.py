"""/openapi.json, built from the operations the routers declare."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from mailq.kinds import KIND_NAME
from mailq.service.api import JsonSchema, Operation, Role

KINDS_MARKER = "x-mailq-kinds"

ERROR_REF = {"$ref": "#/components/schemas/Error"}
_DESCRIPTIONS = {
    400: "malformed request (bad JSON, header or query)",
    401: "no valid bearer token",
    403: "a client token on an admin endpoint",
    404: "not found: no such email, campaign, address or kind (or endpoint)",
    409: "the email or campaign is in a state that does not allow this",
    413: "the body is over the size limit",
    422: "the request names a field that is wrong; nothing was stored",
    503: "the database is unreachable or its schema is not the one this code needs",
}
_CONVERTER = re.compile(r"\{(\w+):\w+\}")


def errors(*codes: int) -> dict[int, tuple[str, JsonSchema | None]]:
    """Error responses, each `{"error": "..."}`."""
    return {code: (_DESCRIPTIONS[code], ERROR_REF) for code in codes}


def _operation(op: Operation) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "summary": op.summary,
        "operationId": op.handler.__name__,
        "tags": [op.tag],
        "responses": {},
    }
    if op.parameters:
        spec["parameters"] = [dict(p) for p in op.parameters]
    if op.body is not None:
        spec["requestBody"] = {
            "required": op.body_required,
            "content": {op.body_media_type: {"schema": dict(op.body)}},
        }
    if op.role is Role.PUBLIC:
        spec["security"] = []
    else:
        spec["description"] = (
            "needs an admin token" if op.role is Role.ADMIN else "a client or admin token"
        )
    responses = dict(op.responses)
    if op.role is not Role.PUBLIC:
        responses.setdefault(401, (_DESCRIPTIONS[401], ERROR_REF))
    for status, (description, schema) in sorted(responses.items()):
        entry: dict[str, Any] = {"description": description}
        if schema is not None:
            media = (
                "application/json"
                if status >= 300 or op.media_type == "application/json"
                else op.media_type
            )
            entry["content"] = {media: {"schema": dict(schema)}}
        elif op.media_type != "application/json":
            entry["content"] = {op.media_type: {"schema": {"type": "string"}}}
        spec["responses"][str(status)] = entry
    return spec


def _with_kinds(value: Any, kinds: list[str]) -> Any:
    """`value` with each schema marked `x-mailq-kinds` given the enum of `kinds`."""
    if isinstance(value, dict):
        if value.get(KINDS_MARKER):
            marked = {k: v for k, v in value.items() if k != KINDS_MARKER}
            return {**marked, "enum": kinds} if kinds else {**marked, "pattern": KIND_NAME.pattern}
        return {key: _with_kinds(item, kinds) for key, item in value.items()}
    if isinstance(value, list):
        return [_with_kinds(item, kinds) for item in value]
    return value


def document(
    operations: Iterable[Operation], version: str, kinds: Iterable[str] = ()
) -> dict[str, Any]:
    """The OpenAPI document; a schema marked `x-mailq-kinds` lists the configured `kinds`
    (a kind not configured is refused, so the document says which are)."""
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        path = _CONVERTER.sub(r"{\1}", op.path)
        paths.setdefault(path, {})[op.method.lower()] = _with_kinds(_operation(op), sorted(kinds))
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "mailq",
            "version": version,
            "description": 'A Postgres-native email queue. Errors are {"error": "..."}.',
        },
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {"error": {"type": "string"}},
                }
            },
        },
        "security": [{"bearer": []}],
    }
