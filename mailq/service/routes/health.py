"""For load balancers, monitoring and API clients: no token needed."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mailq.db.bounce_breakers import bounce_breaker_list
from mailq.db.breakers import backend_breaker_list
from mailq.db.connection import DATABASE_ERRORS
from mailq.db.emails import email_count_by_state
from mailq.db.events import event_rates
from mailq.db.leases import worker_lease_list
from mailq.db.schema import HEAD, check_revision, current_revision
from mailq.errors import SchemaMismatch
from mailq.service.api import Role, Router
from mailq.service.errors import error_response
from mailq.service.metrics import CONTENT_TYPE, QueueState
from mailq.service.openapi import errors
from mailq.service.schemas.events import RATE_DAYS
from mailq.service.state import service_of

router = Router("health")

# A health check must answer quickly even when the database hangs.
CHECK_TIMEOUT_S = 2.0
STATUS: dict[str, Any] = {"type": "object", "properties": {"status": {"type": "string"}}}


@router.route(
    "GET",
    "/healthz",
    role=Role.PUBLIC,
    summary="The process is up",
    responses={200: ("up", STATUS)},
)
async def healthz(_request: Request) -> Response:
    return JSONResponse({"status": "ok"})


@router.route(
    "GET",
    "/readyz",
    role=Role.PUBLIC,
    summary="Ready to serve: the database answers and its schema is the one this code needs",
    responses={200: ("ready", STATUS), **errors(503)},
)
async def readyz(request: Request) -> Response:
    service = service_of(request)
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_S):
            revision = await current_revision(service.pool)
        check_revision(revision)
    except SchemaMismatch as exc:
        return error_response(503, str(exc))
    except DATABASE_ERRORS:
        return error_response(503, "the queue's database is unreachable")
    worker = service.worker
    embedded = "off" if worker is None else ("running" if worker.running else "starting")
    return JSONResponse({"status": "ready", "schema": HEAD, "embedded_worker": embedded})


@router.route(
    "GET",
    "/metrics",
    role=Role.PUBLIC,
    summary="Prometheus metrics of the whole service (every process) and of the queue",
    responses={200: ("Prometheus text format", None)},
    media_type="text/plain",
)
async def metrics(request: Request) -> Response:
    service = service_of(request)
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_S):
            counts = await email_count_by_state(service.pool)
            workers = await worker_lease_list(service.pool)
            breakers = await backend_breaker_list(service.pool)
            rates = await event_rates(service.pool, RATE_DAYS)
            paused = await bounce_breaker_list(service.pool)
        state = QueueState(counts, workers, breakers, rates, paused)
    except DATABASE_ERRORS:
        state = QueueState(None, None)
    body = await asyncio.to_thread(service.metrics.render, state)
    return Response(body, media_type=CONTENT_TYPE)


@router.route(
    "GET",
    "/openapi.json",
    role=Role.PUBLIC,
    summary="This document",
    responses={200: ("OpenAPI 3.1", {"type": "object"})},
)
async def openapi(request: Request) -> Response:
    return JSONResponse(request.app.state.openapi)
