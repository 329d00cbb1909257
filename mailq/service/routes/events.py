"""Delivery events: `GET /v1/events?type=…&since=<RFC 3339>&after_id=…&limit=…`, in arrival
order (bounces, complaints, deliveries, unsubscribes, deferrals, from every source)."""

from __future__ import annotations

from datetime import datetime

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mailq.db.events import event_list
from mailq.service.api import Role, Router
from mailq.service.errors import ApiError
from mailq.service.openapi import errors
from mailq.service.schemas.events import EVENT_LIST, EVENT_TYPES, event_view
from mailq.service.state import MAX_ID, service_of

router = Router("events")

LIMIT_DEFAULT = 100
LIMIT_MAX = 1000
_KNOWN = frozenset({"type", "since", "after_id", "limit"})


def _since(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(400, "since: not an RFC 3339 time (e.g. 2026-12-01T08:00:00Z)") from None
    if moment.utcoffset() is None:
        raise ApiError(400, "since: give the time with its offset (Z or +hh:mm)")
    return moment


def _whole(name: str, value: str, high: int) -> int:
    if not value.isdigit() or not 1 <= int(value) <= high:
        raise ApiError(400, f"{name}: a whole number from 1 to {high}")
    return int(value)


@router.route(
    "GET",
    "/v1/events",
    role=Role.ADMIN,
    summary="Delivery events (bounces, complaints, deliveries ...) in arrival order; page with "
    "after_id",
    parameters=[
        {"name": "type", "in": "query", "schema": {"type": "string", "enum": EVENT_TYPES}},
        {"name": "since", "in": "query", "schema": {"type": "string", "format": "date-time"}},
        {"name": "after_id", "in": "query", "schema": {"type": "integer", "minimum": 1}},
        {
            "name": "limit",
            "in": "query",
            "schema": {"type": "integer", "minimum": 1, "maximum": LIMIT_MAX},
        },
    ],
    responses={200: ("events", EVENT_LIST), **errors(400, 401, 403)},
)
async def list_events(request: Request) -> Response:
    query = request.query_params
    for name in query:
        if name not in _KNOWN:
            raise ApiError(400, f"{name[:64]}: unknown query parameter")
    event_type = query.get("type")
    if event_type is not None and event_type not in EVENT_TYPES:
        raise ApiError(400, f"type: one of {', '.join(EVENT_TYPES)}")
    since = _since(query["since"]) if "since" in query else None
    after_id = _whole("after_id", query["after_id"], MAX_ID) if "after_id" in query else None
    limit = _whole("limit", query["limit"], LIMIT_MAX) if "limit" in query else LIMIT_DEFAULT
    rows = await event_list(service_of(request).pool, event_type, since, limit, after_id)
    return JSONResponse(
        {
            "events": [event_view(r) for r in rows],
            "next_after_id": rows[-1]["id"] if len(rows) == limit else None,
        }
    )
