"""Campaigns: progress by state (on the list, and on a campaign's page past EXACT_OPEN_MAX
open emails, from the counts, dashboard_campaign_progress; else mailq.campaign_progress: open
emails through their partial index, finished ones from mailq.campaign_counts), rate and ETA
from samples of the finished count, bounce and complaint rates (mailq.event_counts over
mailq.campaign_counts, against the pause limits of the campaign's kind), pause / resume /
cancel through mailq.campaigns."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.responses import Response

from mailq import campaigns as operations
from mailq.campaigns import Campaign
from mailq.db.audit_log import audit_log_for_target
from mailq.db.dashboard import dashboard_campaign_progress, dashboard_event_rates_campaign
from mailq.errors import CampaignNotFound
from mailq.service.dashboard import charts, deliverability, rates
from mailq.service.dashboard.guard import Context, Form, action, done, not_found, page
from mailq.service.dashboard.overview import FINISHED_STATES, OPEN_STATES
from mailq.service.state import MAX_ID

PAGE_SIZE = 25
# A campaign's page counts its open emails by state (queued, scheduled, retrying ...) while it
# has at most this many; past that, and on the list, its waiting ones are counted together
# from its recipients (dashboard_campaign_progress): no waiting email is read.
EXACT_OPEN_MAX = 20_000
NO_EVENTS = dict.fromkeys(("sent", "delivered", "hard_bounced", "soft_bounced", "rejected",
                           "complained", "unsubscribed"), 0) | {"paused_reason": None}  # fmt: skip


async def _view(ctx: Context, campaign: Campaign, progress: Mapping[str, int]) -> dict[str, Any]:
    finished = sum(progress.get(s, 0) for s in FINISHED_STATES)
    remaining = sum(progress.get(s, 0) for s in OPEN_STATES)
    pace = rates.CampaignPace(None, None)
    if campaign.status != "cancelled" and remaining:
        pace = await rates.campaign_pace(ctx.pool, campaign.id, finished, remaining)
    total = sum(progress.values())
    events = await dashboard_event_rates_campaign(ctx.pool, campaign.id) or NO_EVENTS
    policy = deliverability.bounce_rules(ctx.service).for_kind(campaign.kind)
    return {
        "events": deliverability.rates_of(campaign.name, events, policy),
        "paused_reason": events["paused_reason"],
        "campaign": campaign,
        "progress": progress,
        "total": total,
        "finished": finished,
        "remaining": remaining,
        "pace": pace,
        "segments": charts.progress_segments(progress, total),
    }


@page
async def campaigns(ctx: Context) -> Response:
    before = ctx.request.query_params.get("before", "")
    before_id = int(before) if before.isdigit() and len(before) <= 19 else None
    listed = await operations.list_campaigns(ctx.pool, limit=PAGE_SIZE, before_id=before_id)
    counted = await dashboard_campaign_progress(ctx.pool, [c.id for c in listed])
    views = [await _view(ctx, item, counted[item.id]) for item in listed]
    await rates.prune_campaign_samples(ctx.pool)
    next_before = listed[-1].id if len(listed) == PAGE_SIZE else None
    return ctx.page("campaigns.html", "campaigns", views=views, next_before=next_before)


def _campaign_id(ctx: Context) -> int | None:
    raw = ctx.request.path_params.get("id")
    return raw if isinstance(raw, int) and 1 <= raw <= MAX_ID else None


@page
async def campaign(ctx: Context) -> Response:
    campaign_id = _campaign_id(ctx)
    try:
        if campaign_id is None:
            raise CampaignNotFound("no such campaign")
        progress = (await dashboard_campaign_progress(ctx.pool, [campaign_id]))[campaign_id]
        # Every state exactly while that reads few emails; else from the counts.
        exact = sum(n for s, n in progress.items() if s in OPEN_STATES) <= EXACT_OPEN_MAX
        found = await operations.get_campaign(ctx.pool, campaign_id, progress=exact)
    except CampaignNotFound:
        return not_found(ctx, f"No campaign has id {ctx.request.path_params.get('id')}.")
    view = await _view(ctx, found, found.progress if exact else progress)
    return ctx.page(
        "campaign.html",
        "campaigns",
        **view,
        audit=await audit_log_for_target(ctx.pool, "campaign", str(found.id)),
        pause_min_sent=view["events"].policy.pause_min_sent,
        content=found.content,
    )


@action
async def campaign_action(ctx: Context, form: Form) -> Response:
    campaign_id = _campaign_id(ctx)
    verb = ctx.request.path_params.get("verb")
    changes = {
        "pause": (operations.pause_campaign, "Paused campaign {id}: {n} emails held."),
        "resume": (operations.resume_campaign, "Resumed campaign {id}: {n} emails released."),
        "cancel": (operations.cancel_campaign, "Cancelled campaign {id}: {n} emails cancelled."),
    }
    if campaign_id is None or verb not in changes:
        return not_found(ctx, "No such campaign or action.")
    change, message = changes[verb]
    async with ctx.pool.acquire() as conn, conn.transaction():
        n = await change(conn, campaign_id)
        await ctx.record(
            conn, f"campaign.{verb}", "campaign", str(campaign_id), detail={"emails": n}
        )
    back = form.get("back") or f"/dashboard/campaigns/{campaign_id}"
    return done(ctx, back, message.format(id=campaign_id, n=n))
