"""Campaigns: create one with its recipients, add more in chunks, read its progress, pause,
resume, cancel (mailq.campaigns does the work)."""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mailq import campaigns
from mailq.db.bounce_breakers import bounce_breaker_get
from mailq.db.events import event_rates_campaign
from mailq.service import idempotency
from mailq.service.api import Role, Router
from mailq.service.body import read_json
from mailq.service.errors import ApiError
from mailq.service.openapi import errors
from mailq.service.schemas import campaigns as schemas_campaigns
from mailq.service.schemas.events import rates_view
from mailq.service.schemas.fields import ID
from mailq.service.state import MAX_ID, service_of

router = Router("campaigns")

ID_PARAMETER = {
    "name": "id",
    "in": "path",
    "required": True,
    "description": "the campaign's id",
    "schema": ID,
}


def _campaign_id(request: Request) -> int:
    campaign_id: int = request.path_params["id"]
    if not 1 <= campaign_id <= MAX_ID:
        raise ApiError(404, f"campaign {campaign_id}: no such campaign")
    return campaign_id


@router.route(
    "POST",
    "/v1/campaigns",
    role=Role.CLIENT,
    summary="Create a campaign with its first recipients (one email each), all or nothing",
    body=schemas_campaigns.CAMPAIGN,
    parameters=[idempotency.PARAMETER],
    idempotent=True,
    responses={
        201: ("created", schemas_campaigns.CAMPAIGN_CREATED),
        200: ("a replay of the Idempotency-Key: the first response", None),
        **errors(400, 401, 413, 422),
    },
)
async def create_campaign(request: Request) -> Response:
    service = service_of(request)
    data = await read_json(request, service.limits.body_bytes)
    new, recipients = schemas_campaigns.new_campaign(data, service.config.kinds)

    async def work(conn: asyncpg.Connection) -> tuple[int, dict[str, Any]]:
        campaign, added = await campaigns.create_campaign(
            conn,
            new,
            recipients,
            default_from=service.settings.from_address,
            kinds=service.config.kinds,
            templates=service.config.templates,
        )
        return 201, {
            "id": campaign.id,
            "recipients": added.added,
            "duplicates": added.duplicates,
            "suppressed": added.suppressed,
        }

    outcome = await idempotency.perform(
        request, service.pool, data, service.limits.idempotency_hours, work
    )
    if not outcome.replayed:
        service.metrics.count_queued(itertools.repeat(new.kind, outcome.body["recipients"]))
    headers = {idempotency.REPLAYED_HEADER: "true"} if outcome.replayed else None
    return JSONResponse(outcome.body, status_code=outcome.status, headers=headers)


@router.route(
    "POST",
    "/v1/campaigns/{id:id}/recipients",
    role=Role.CLIENT,
    summary="Add recipients to a campaign (send large lists in chunks); one already in the "
    "campaign is counted as a duplicate and ignored",
    body=schemas_campaigns.ADD_RECIPIENTS,
    parameters=[ID_PARAMETER],
    responses={
        200: ("added", schemas_campaigns.ADDED),
        **errors(400, 401, 404, 409, 413, 422),
    },
)
async def add_recipients(request: Request) -> Response:
    service = service_of(request)
    campaign_id = _campaign_id(request)
    data = await read_json(request, service.limits.body_bytes)
    recipients = schemas_campaigns.more_recipients(data)
    async with service.pool.acquire() as conn:
        added = await campaigns.add_recipients(conn, campaign_id, recipients)
    if added.added:
        campaign = await campaigns.get_campaign(service.pool, campaign_id, progress=False)
        service.metrics.count_queued(itertools.repeat(campaign.kind, added.added))
    return JSONResponse(
        {"added": added.added, "duplicates": added.duplicates, "suppressed": added.suppressed}
    )


@router.route(
    "GET",
    "/v1/campaigns/{id:id}",
    role=Role.CLIENT,
    summary="A campaign and its progress: its emails counted by state",
    parameters=[ID_PARAMETER],
    responses={200: ("the campaign", schemas_campaigns.CAMPAIGN_VIEW), **errors(401, 404)},
)
async def get_campaign(request: Request) -> Response:
    pool = service_of(request).pool
    campaign = await campaigns.get_campaign(pool, _campaign_id(request))
    return JSONResponse(await _with_rates(pool, schemas_campaigns.campaign_view(campaign)))


async def _with_rates(pool: asyncpg.Pool, view: dict[str, Any]) -> dict[str, Any]:
    """The campaign's bounce and complaint rates, and why it is paused when the bounce
    breaker paused it."""
    counts = await event_rates_campaign(pool, view["id"])
    breaker = await bounce_breaker_get(pool, "campaign", str(view["id"]))
    paused_by_breaker = breaker is not None and view["status"] == "paused"
    return {
        **view,
        "rates": rates_view(counts),
        "paused_reason": breaker["reason"] if paused_by_breaker and breaker else None,
    }


Change = Callable[[asyncpg.Connection, int], Awaitable[int]]


async def _change(request: Request, change: Change) -> Response:
    service = service_of(request)
    campaign_id = _campaign_id(request)
    async with service.pool.acquire() as conn:
        changed = await change(conn, campaign_id)
    view = schemas_campaigns.campaign_view(await campaigns.get_campaign(service.pool, campaign_id))
    return JSONResponse({**await _with_rates(service.pool, view), "changed": changed})


_CHANGED = {
    200: ("the campaign after the change, with `changed`", schemas_campaigns.CAMPAIGN_VIEW),
    **errors(401, 403, 404, 409),
}


@router.route(
    "POST",
    "/v1/campaigns/{id:id}/pause",
    role=Role.ADMIN,
    summary="Hold what the campaign has not sent (sends in flight finish)",
    parameters=[ID_PARAMETER],
    responses=_CHANGED,
)
async def pause_campaign(request: Request) -> Response:
    return await _change(request, campaigns.pause_campaign)


@router.route(
    "POST",
    "/v1/campaigns/{id:id}/resume",
    role=Role.ADMIN,
    summary="Release a paused campaign: its emails are due at send_at (or now)",
    parameters=[ID_PARAMETER],
    responses=_CHANGED,
)
async def resume_campaign(request: Request) -> Response:
    return await _change(request, campaigns.resume_campaign)


@router.route(
    "POST",
    "/v1/campaigns/{id:id}/cancel",
    role=Role.ADMIN,
    summary="Cancel what the campaign has not sent; it takes no more recipients",
    parameters=[ID_PARAMETER],
    responses=_CHANGED,
)
async def cancel_campaign(request: Request) -> Response:
    return await _change(request, campaigns.cancel_campaign)
