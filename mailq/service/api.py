"""How an endpoint is declared: method, path, who may call it and its OpenAPI description,
next to its handler. Each area of the API is one `routes_*.py` module with one `Router`;
app.py mounts them and openapi.py describes them, so a new area is one new module."""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from starlette.convertors import Convertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import Response

Handler = Callable[[Request], Awaitable[Response]]
JsonSchema = Mapping[str, Any]


class IdConvertor(Convertor[int]):
    """`{id:id}` in a path: a bigint id. At most 19 digits, so that a path of a thousand
    digits is simply not found rather than an error; ids past 2**63 - 1 are refused by the
    handler."""

    regex = "[0-9]{1,19}"

    def convert(self, value: str) -> int:
        return int(value)

    def to_string(self, value: int) -> str:
        return str(int(value))


register_url_convertor("id", IdConvertor())


class Role(enum.IntEnum):
    """Who may call an endpoint (SPEC.md, "Who may call what"); higher includes lower."""

    PUBLIC = 0
    CLIENT = 1
    ADMIN = 2


@dataclass(frozen=True, slots=True)
class Operation:
    method: str
    path: str  # Starlette form, e.g. /v1/emails/{id:id}
    handler: Handler
    role: Role
    summary: str
    tag: str
    body: JsonSchema | None = None
    responses: Mapping[int, tuple[str, JsonSchema | None]] = field(default_factory=dict)
    parameters: Sequence[Mapping[str, Any]] = ()
    idempotent: bool = False
    media_type: str = "application/json"
    # The request body's media type, and whether a body must be sent at all.
    body_media_type: str = "application/json"
    body_required: bool = True


class Router:
    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.operations: list[Operation] = []

    def route(
        self,
        method: str,
        path: str,
        *,
        role: Role,
        summary: str,
        body: JsonSchema | None = None,
        responses: Mapping[int, tuple[str, JsonSchema | None]],
        parameters: Sequence[Mapping[str, Any]] = (),
        idempotent: bool = False,
        media_type: str = "application/json",
        body_media_type: str = "application/json",
        body_required: bool = True,
    ) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            self.operations.append(
                Operation(
                    method=method,
                    path=path,
                    handler=handler,
                    role=role,
                    summary=summary,
                    tag=self.tag,
                    body=body,
                    responses=responses,
                    parameters=parameters,
                    idempotent=idempotent,
                    media_type=media_type,
                    body_media_type=body_media_type,
                    body_required=body_required,
                )
            )
            return handler

        return register
