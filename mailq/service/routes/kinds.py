"""Kinds: the emergency stop. A paused kind is claimed by no worker (sends in flight finish)
until it is resumed (mailq.admin does the work)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mailq import admin
from mailq.kinds import KIND_NAME
from mailq.service.api import Role, Router
from mailq.service.errors import ApiError
from mailq.service.openapi import errors
from mailq.service.state import Service, service_of

router = Router("kinds")

PAUSED_BY = "the admin API"
KIND_PARAMETER = {
    "name": "kind",
    "in": "path",
    "required": True,
    "description": "a kind the configuration declares (welcome, search_engine, ...)",
    "schema": {"type": "string", "pattern": KIND_NAME.pattern, "maxLength": 63},
}
KIND_STATE: dict[str, Any] = {
    "type": "object",
    "required": ["kind", "paused", "changed"],
    "properties": {
        "kind": {"type": "string"},
        "paused": {"type": "boolean"},
        "changed": {"type": "boolean", "description": "false when it already was so"},
    },
}


async def _kind(request: Request, service: Service, *, or_paused: bool) -> str:
    """The path's kind: a configured one (or, to resume, one still paused from an older
    configuration); 404 otherwise."""
    kind: str = request.path_params["kind"]
    if kind in service.config.kinds:
        return kind
    if or_paused and KIND_NAME.match(kind) and kind in await admin.paused_kinds(service.pool):
        return kind
    known = ", ".join(sorted(service.config.kinds))
    raise ApiError(404, f"kind: {kind[:64]!r} is not a configured kind (known: {known})")


@router.route(
    "POST",
    "/v1/kinds/{kind}/pause",
    role=Role.ADMIN,
    summary="Stop every worker from claiming emails of a kind (an emergency stop)",
    parameters=[KIND_PARAMETER],
    responses={200: ("paused", KIND_STATE), **errors(401, 403, 404)},
)
async def pause_kind(request: Request) -> Response:
    service = service_of(request)
    kind = await _kind(request, service, or_paused=False)
    changed = await admin.pause_kind(service.pool, kind, PAUSED_BY)
    return JSONResponse({"kind": kind, "paused": True, "changed": changed})


@router.route(
    "POST",
    "/v1/kinds/{kind}/resume",
    role=Role.ADMIN,
    summary="Let workers claim a paused kind again",
    parameters=[KIND_PARAMETER],
    responses={200: ("running", KIND_STATE), **errors(401, 403, 404)},
)
async def resume_kind(request: Request) -> Response:
    service = service_of(request)
    kind = await _kind(request, service, or_paused=True)
    changed = await admin.resume_kind(service.pool, kind)
    return JSONResponse({"kind": kind, "paused": False, "changed": changed})
