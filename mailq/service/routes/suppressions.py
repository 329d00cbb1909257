"""The suppression list: addresses mailq never sends to (mailq.suppression does the work).
Adding an address cancels its emails that have not gone out."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote_to_bytes

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mailq import suppression
from mailq.errors import InvalidEmail
from mailq.service.api import Role, Router
from mailq.service.body import parse_json, read_body, read_json
from mailq.service.errors import ApiError
from mailq.service.openapi import errors
from mailq.service.schemas.emails import iso
from mailq.service.schemas.fields import ADDRESS, BARE_ADDRESS, ONE_LINE
from mailq.service.state import service_of
from mailq.suppression import REASON_MAX_CHARS, Suppression

router = Router("suppressions")

API_REASON = "added through the API"
LIST_LIMIT_DEFAULT = 1000
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
ADDRESS_PARAMETER = {
    "name": "address",
    "in": "path",
    "required": True,
    "description": "an email address (compared without case)",
    "schema": {"type": "string", "maxLength": 320, "pattern": f"^{BARE_ADDRESS}$"},
}
ENTRY: dict[str, Any] = {
    "type": "object",
    "required": ["address", "reason", "created_at"],
    "properties": {
        "address": {"type": "string"},
        "reason": {"type": "string"},
        "created_at": {"type": "string", "format": "date-time"},
        "expires_at": {"type": ["string", "null"], "format": "date-time"},
    },
}
PAGE: dict[str, Any] = {
    "type": "object",
    "required": ["suppressions", "next_after"],
    "properties": {
        "suppressions": {"type": "array", "items": ENTRY},
        "next_after": {
            "type": ["string", "null"],
            "description": "pass as `after` for the next page; null on the last one",
        },
    },
}
REASON: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": REASON_MAX_CHARS}
ADD: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["addresses"],
    "properties": {
        "addresses": {"type": "array", "items": ADDRESS, "minItems": 1},
        "reason": REASON,
    },
}
REMOVE: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["addresses"],
    "properties": {"addresses": {"type": "array", "items": ADDRESS, "minItems": 1}},
}
ADD_ONE: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {"reason": REASON},
}
ADDED: dict[str, Any] = {
    "type": "object",
    "required": ["added", "cancelled"],
    "properties": {
        "added": {"type": "integer", "description": "addresses not on the list before"},
        "cancelled": {"type": "integer", "description": "their emails cancelled, unsent"},
    },
}
REMOVED: dict[str, Any] = {
    "type": "object",
    "required": ["removed"],
    "properties": {"removed": {"type": "integer"}},
}


def entry_view(entry: Suppression) -> dict[str, Any]:
    return {
        "address": entry.address,
        "reason": entry.reason,
        "created_at": iso(entry.created_at),
        "expires_at": iso(entry.expires_at),
    }


def _object(data: object, fields: set[str], shape: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ApiError(400, f"body: must be a JSON object {shape}")
    unknown = sorted(set(data) - fields)
    if unknown:
        raise InvalidEmail(f"{unknown[0]}: unknown field")
    return data


def _addresses(data: dict[str, Any], limit: int) -> list[str]:
    addresses = data.get("addresses")
    if not isinstance(addresses, list) or not addresses:
        raise InvalidEmail("addresses: a non-empty list of addresses is required")
    if len(addresses) > limit:
        raise InvalidEmail(f"addresses: at most {limit} per request, got {len(addresses)}")
    for index, address in enumerate(addresses):
        if not isinstance(address, str):
            raise InvalidEmail(f"addresses[{index}]: must be a string")
    return addresses


def _reason(data: dict[str, Any]) -> str:
    reason = data.get("reason", API_REASON)
    if not isinstance(reason, str) or not reason:
        raise InvalidEmail("reason: must be a non-empty string")
    if len(reason) > REASON_MAX_CHARS:
        # As the document says (the list would keep its first characters only).
        raise InvalidEmail(f"reason: at most {REASON_MAX_CHARS} characters")
    return reason


def _path_address(request: Request) -> str:
    address: str = request.path_params["address"]
    if "\ufffd" in address:
        # Starlette decodes a path's %-escapes leniently: %FF becomes U+FFFD.
        raw = request.scope.get("raw_path") or b""
        try:
            unquote_to_bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            raise ApiError(400, "address: the path is not valid UTF-8") from None
    return suppression.normalise(address, "address")


@router.route(
    "GET",
    "/v1/suppressions",
    role=Role.ADMIN,
    summary="Suppressed addresses in address order, a page at a time",
    parameters=[
        {
            "name": "after",
            "in": "query",
            "description": "the last address of the previous page",
            "schema": {"type": "string", "maxLength": 320, "pattern": ONE_LINE},
        },
        {
            "name": "limit",
            "in": "query",
            "schema": {"type": "integer", "minimum": 1, "maximum": suppression.LIST_LIMIT_MAX},
        },
    ],
    responses={200: ("a page of the list", PAGE), **errors(400, 401, 403)},
)
async def list_suppressions(request: Request) -> Response:
    after: str | None = None
    limit = LIST_LIMIT_DEFAULT
    for name, value in request.query_params.multi_items():
        if name == "after":
            if len(value) > 320 or _CONTROL.search(value):
                raise ApiError(400, "after: an address from the previous page")
            after = value or None
        elif name == "limit":
            top = suppression.LIST_LIMIT_MAX
            if not (
                value.isascii() and value.isdigit() and len(value) <= 9 and 1 <= int(value) <= top
            ):
                raise ApiError(400, f"limit: a whole number from 1 to {top}")
            limit = int(value)
        else:
            raise ApiError(400, f"{name[:64]}: unknown query parameter (after, limit)")
    entries = await suppression.list_suppressions(
        service_of(request).pool, after=after, limit=limit
    )
    return JSONResponse(
        {
            "suppressions": [entry_view(e) for e in entries],
            "next_after": entries[-1].address if len(entries) == limit else None,
        }
    )


@router.route(
    "POST",
    "/v1/suppressions",
    role=Role.ADMIN,
    summary="Suppress addresses and cancel their emails that have not gone out",
    body=ADD,
    responses={200: ("suppressed", ADDED), **errors(400, 401, 403, 413, 422)},
)
async def add_suppressions(request: Request) -> Response:
    service = service_of(request)
    raw = await read_json(request, service.limits.body_bytes)
    data = _object(raw, {"addresses", "reason"}, '{"addresses": [...], "reason": "..."}')
    addresses = _addresses(data, service.limits.batch_emails)
    done = await suppression.suppress(service.pool, addresses, _reason(data))
    return JSONResponse({"added": done.added, "cancelled": done.cancelled})


@router.route(
    "DELETE",
    "/v1/suppressions",
    role=Role.ADMIN,
    summary="Take addresses off the list (emails cancelled meanwhile stay cancelled)",
    body=REMOVE,
    responses={200: ("how many were on the list", REMOVED), **errors(400, 401, 403, 413, 422)},
)
async def remove_suppressions(request: Request) -> Response:
    service = service_of(request)
    raw = await read_json(request, service.limits.body_bytes)
    data = _object(raw, {"addresses"}, '{"addresses": [...]}')
    addresses = _addresses(data, service.limits.batch_emails)
    removed = await suppression.unsuppress(service.pool, addresses)
    return JSONResponse({"removed": removed})


@router.route(
    "GET",
    "/v1/suppressions/{address}",
    role=Role.ADMIN,
    summary="Whether an address is suppressed, and why",
    parameters=[ADDRESS_PARAMETER],
    responses={200: ("on the list", ENTRY), **errors(401, 403, 404, 422)},
)
async def get_suppression(request: Request) -> Response:
    address = _path_address(request)
    found = await suppression.find_suppressions(service_of(request).pool, [address])
    if address not in found:
        raise ApiError(404, f"{address} is not suppressed")
    return JSONResponse(entry_view(found[address]))


@router.route(
    "POST",
    "/v1/suppressions/{address}",
    role=Role.ADMIN,
    summary="Suppress one address (optional body: reason) and cancel its unsent emails",
    parameters=[ADDRESS_PARAMETER],
    body=ADD_ONE,
    body_required=False,
    responses={200: ("suppressed", ADDED), **errors(400, 401, 403, 413, 422)},
)
async def add_suppression(request: Request) -> Response:
    service = service_of(request)
    address = _path_address(request)
    raw = await read_body(request, service.limits.body_bytes)
    data = _object(parse_json(raw) if raw.strip() else {}, {"reason"}, '{"reason": "..."}')
    done = await suppression.suppress(service.pool, [address], _reason(data))
    return JSONResponse({"added": done.added, "cancelled": done.cancelled})


@router.route(
    "DELETE",
    "/v1/suppressions/{address}",
    role=Role.ADMIN,
    summary="Take one address off the list",
    parameters=[ADDRESS_PARAMETER],
    responses={200: ("removed", REMOVED), **errors(401, 403, 404, 422)},
)
async def remove_suppression(request: Request) -> Response:
    address = _path_address(request)
    if not await suppression.unsuppress(service_of(request).pool, [address]):
        raise ApiError(404, f"{address} is not suppressed")
    return JSONResponse({"removed": 1})
