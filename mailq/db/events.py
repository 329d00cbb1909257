"""The only caller of the event statements (sql/events.sql): delivery events, their matching
to emails, and the rates mailq.event_counts keeps."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from mailq.db.connection import Executor
from mailq.db.queries import QUERIES


async def event_match_email(
    db: Executor, email_id: int | None, message_id: str | None, provider_message_id: str | None
) -> dict[str, Any] | None:
    """The email an event names (id, kind, campaign_id, to_address), or None."""
    row = await db.fetchrow(QUERIES["event_match_email"], email_id, message_id, provider_message_id)
    return dict(row) if row is not None else None


async def event_insert(db: Executor, values: tuple[Any, ...]) -> int | None:
    """Insert one event (the 16 values of event_insert, in order); its id, or None when the
    same event (dedup_key) is recorded already."""
    row = await db.fetchrow(QUERIES["event_insert"], *values)
    return None if row is None else int(row["id"])


async def event_count_soft(db: Executor, recipient: str, since: datetime) -> int:
    row = await db.fetchrow(QUERIES["event_count_soft"], recipient, since)
    return int(row["n"]) if row is not None else 0


async def event_list_for_email(db: Executor, email_id: int) -> list[dict[str, Any]]:
    return [dict(r) for r in await db.fetch(QUERIES["event_list_for_email"], email_id)]


async def event_list(
    db: Executor,
    event_type: str | None,
    since: datetime | None,
    limit: int,
    after_id: int | None = None,
) -> list[dict[str, Any]]:
    rows = await db.fetch(QUERIES["event_list"], event_type, since, limit, after_id)
    return [dict(r) for r in rows]


async def event_rates(db: Executor, days: int) -> list[dict[str, Any]]:
    return [dict(r) for r in await db.fetch(QUERIES["event_rates"], days)]


async def event_rates_campaign(db: Executor, campaign_id: int) -> dict[str, Any]:
    row = await db.fetchrow(QUERIES["event_rates_campaign"], campaign_id)
    return dict(row) if row is not None else {}


async def event_campaign_counts(db: Executor, campaign_id: int) -> dict[str, int]:
    row = await db.fetchrow(QUERIES["event_campaign_counts"], campaign_id)
    assert row is not None
    return {k: int(row[k]) for k in ("sent", "hard_bounced", "complained")}


async def event_kind_counts(db: Executor, kind: str, days: int) -> dict[str, int]:
    row = await db.fetchrow(QUERIES["event_kind_counts"], kind, days)
    assert row is not None
    return {k: int(row[k]) for k in ("sent", "hard_bounced", "complained")}
