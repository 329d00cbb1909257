"""A campaign's status: pause holds its waiting emails (due in the far future), resume
releases them (due at `send_at`, or now), cancel turns what is not yet sent into
`cancelled`. Emails already handed to a worker finish their attempt."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import asyncpg

from mailq.db import campaigns as db
from mailq.errors import CampaignClosed, CampaignNotFound

CANCEL_REASON = "campaign cancelled"


async def pause_campaign(conn: asyncpg.Connection, campaign_id: int) -> int:
    """Hold what the campaign has not sent; returns how many emails were held."""
    async with conn.transaction():
        row = await _locked(conn, campaign_id)
        if row["status"] == "cancelled":
            raise CampaignClosed(f"campaign {campaign_id}: cancelled, it cannot be paused")
        await db.campaign_set_status(conn, campaign_id, "paused")
        return await db.email_pause_campaign(conn, campaign_id)


async def resume_campaign(conn: asyncpg.Connection, campaign_id: int) -> int:
    """Release a paused campaign: its emails are due at send_at (or now); returns how many."""
    async with conn.transaction():
        row = await _locked(conn, campaign_id)
        if row["status"] == "cancelled":
            raise CampaignClosed(f"campaign {campaign_id}: cancelled, it cannot be resumed")
        await db.campaign_set_status(conn, campaign_id, "active")
        return await db.email_resume_campaign(conn, campaign_id, row["send_at"])


async def cancel_campaign(conn: asyncpg.Connection, campaign_id: int) -> int:
    """Cancel what the campaign has not sent (waiting or unknown); returns how many."""
    async with conn.transaction():
        await _locked(conn, campaign_id)
        await db.campaign_set_status(conn, campaign_id, "cancelled")
        return await db.email_cancel_campaign(conn, campaign_id, CANCEL_REASON)


async def _locked(conn: asyncpg.Connection, campaign_id: int) -> Mapping[str, Any]:
    row = await db.campaign_lock(conn, campaign_id)
    if row is None:
        raise CampaignNotFound(f"campaign {campaign_id}: no such campaign")
    return row
