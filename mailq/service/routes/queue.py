"""The queue as a whole: stats, live workers, and the old paths dashboards still call."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mailq.db.breakers import backend_breaker_list
from mailq.db.emails import email_count_by_state, email_sent_recently
from mailq.db.events import event_rates
from mailq.db.leases import worker_lease_list
from mailq.models import WAITING_STATES, EmailState
from mailq.service.api import Role, Router
from mailq.service.openapi import errors
from mailq.service.schemas import queue as schemas
from mailq.service.schemas.emails import iso
from mailq.service.schemas.events import RATE_DAYS
from mailq.service.schemas.fields import TIMESTAMP
from mailq.service.state import service_of

router = Router("queue")

SENT_WINDOW_S = 60.0
LEGACY_STATS: dict[str, Any] = {
    "type": "object",
    "required": ["total", "by_type"],
    "properties": {
        "total": {"type": "integer"},
        "by_type": {"type": "object", "additionalProperties": schemas.STATE_COUNTS},
    },
}
PROCESSOR_STATUS: dict[str, Any] = {
    "type": "object",
    "required": ["running", "workers", "last_cycle", "interval"],
    "properties": {
        "running": {"type": "boolean"},
        "workers": {"type": "integer"},
        "last_cycle": TIMESTAMP,
        "interval": {"type": "number"},
        "embedded_worker": {"type": "object"},
    },
}
# The old processor reported these; a waiting or sending email is "pending" there.
PENDING_STATES = (*WAITING_STATES, EmailState.SENDING)


@router.route(
    "GET",
    "/v1/stats",
    role=Role.ADMIN,
    summary="Per kind: count by state, age of the oldest due email, sent in the last minute, "
    "bounce and complaint rates; the same rates per campaign",
    responses={200: ("the queue's state", schemas.STATS), **errors(401, 403)},
)
async def stats(request: Request) -> Response:
    pool = service_of(request).pool
    counts = await email_count_by_state(pool)
    sent = await email_sent_recently(pool, SENT_WINDOW_S)
    breakers = await backend_breaker_list(pool)
    view = schemas.stats_view(counts, sent, breakers)
    return JSONResponse(schemas.with_bounce_rates(view, await event_rates(pool, RATE_DAYS)))


@router.route(
    "GET",
    "/v1/workers",
    role=Role.ADMIN,
    summary="Live workers with their last heartbeat",
    responses={200: ("live workers", schemas.WORKERS), **errors(401, 403)},
)
async def workers(request: Request) -> Response:
    rows = await worker_lease_list(service_of(request).pool)
    return JSONResponse({"workers": [schemas.worker_view(r) for r in rows]})


@router.route(
    "GET",
    "/email-queue/stats",
    role=Role.CLIENT,
    summary="(old path) counts by email type",
    responses={200: ("counts by email type and state", LEGACY_STATS), **errors(401)},
)
async def legacy_stats(request: Request) -> Response:
    counts = await email_count_by_state(service_of(request).pool)
    by_type: dict[str, dict[str, int]] = {}
    for row in counts:
        entry = by_type.setdefault(row["kind"], {"total": 0, "pending": 0})
        entry[row["state"]] = entry.get(row["state"], 0) + row["count"]
        entry["total"] += row["count"]
        if row["state"] in PENDING_STATES:
            entry["pending"] += row["count"]
    total = sum(e["total"] for e in by_type.values())
    return JSONResponse({"total": total, "by_type": dict(sorted(by_type.items()))})


@router.route(
    "GET",
    "/email-queue/background-processor/status",
    role=Role.ADMIN,
    summary="(old path) the processor's state: running, workers, last cycle, interval",
    responses={200: ("the processor's state", PROCESSOR_STATUS), **errors(401, 403)},
)
async def processor_status(request: Request) -> Response:
    service = service_of(request)
    rows = await worker_lease_list(service.pool)
    last = max((r["heartbeat_at"] for r in rows), default=None)
    embedded = service.worker
    return JSONResponse(
        {
            "running": bool(rows),
            "workers": len(rows),
            "last_cycle": iso(last),
            "interval": service.settings.poll_interval_s,
            "embedded_worker": {
                "enabled": embedded is not None,
                "running": embedded is not None and embedded.running,
                "worker_id": None if embedded is None else embedded.worker_id,
                "restarts": 0 if embedded is None else embedded.restarts,
            },
        }
    )
