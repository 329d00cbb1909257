"""The overview: counts per kind and state (the trigger-kept counts and the partial indexes
of mailq.queue_stats), send and failure rates, the oldest due email, live workers, paused
kinds and campaigns, the backend circuit breakers, bounce and complaint rates per kind. Its
live regions are rendered here both for the page and for the server-sent updates (live.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from starlette.responses import JSONResponse, Response

from mailq.db.breakers import backend_breaker_list
from mailq.db.campaigns import campaign_progress_open
from mailq.db.connection import Executor
from mailq.db.dashboard import dashboard_event_rates_kinds, dashboard_oldest_due
from mailq.db.emails import email_count_by_state
from mailq.db.leases import worker_lease_list
from mailq.db.paused_kinds import kind_list_paused
from mailq.models import EmailState
from mailq.service.dashboard import charts, deliverability, rates
from mailq.service.dashboard.guard import Context, page
from mailq.service.dashboard.render import PAGE_HEADERS, render

STATES = tuple(s.value for s in EmailState)
WAITING_STATES = ("scheduled", "queued", "retrying")
OPEN_STATES = ("scheduled", "queued", "retrying", "sending", "unknown")
FINISHED_STATES = ("sent", "failed", "cancelled")
OPEN_CAMPAIGNS = 10
REGIONS = ("counts", "rates", "health", "campaigns")


@dataclass(frozen=True, slots=True)
class KindCounts:
    kind: str
    counts: Mapping[str, int]
    oldest_due_s: float | None

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def count_table(rows: Sequence[Mapping[str, Any]]) -> list[KindCounts]:
    by_kind: dict[str, dict[str, int]] = {}
    oldest: dict[str, float | None] = {}
    for row in rows:
        by_kind.setdefault(row["kind"], {})[row["state"]] = int(row["count"])
        age = row["oldest_due_age_s"]
        if age is not None:
            oldest[row["kind"]] = max(age, oldest.get(row["kind"]) or 0.0)
    return [KindCounts(k, by_kind[k], oldest.get(k)) for k in sorted(by_kind)]


def campaign_rows(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """campaign_progress rows (one per state) as one entry per campaign."""
    out: dict[int, dict[str, Any]] = {}
    for row in rows:
        entry = out.setdefault(
            row["campaign_id"],
            {
                "id": row["campaign_id"],
                "name": row["name"],
                "kind": row["kind"],
                "status": row["campaign_status"],
                "send_at": row["send_at"],
                "progress": {},
            },
        )
        entry["progress"][row["state"]] = int(row["count"])
    for entry in out.values():
        progress = entry["progress"]
        entry["total"] = sum(progress.values())
        entry["finished"] = sum(progress.get(s, 0) for s in FINISHED_STATES)
        entry["remaining"] = sum(progress.get(s, 0) for s in OPEN_STATES)
        entry["segments"] = charts.progress_segments(progress, entry["total"])
    return sorted(out.values(), key=lambda e: -int(e["id"]))


async def _counts_and_oldest(db: Executor) -> tuple[list[KindCounts], dict[str, Any] | None]:
    counts = count_table(await email_count_by_state(db))
    waiting_kinds = [k.kind for k in counts if any(k.counts.get(s) for s in WAITING_STATES)]
    oldest = await dashboard_oldest_due(db, waiting_kinds) if waiting_kinds else None
    return counts, oldest


async def snapshot(db: Executor) -> dict[str, Any]:
    """Everything the overview's live regions show."""
    # Independent reads: on a pool they run side by side (each on its own connection), so
    # the update takes as long as its longest chain of queries, not their sum.
    if isinstance(db, asyncpg.Pool):
        (
            (counts, oldest),
            attempt,
            workers,
            paused,
            progress,
            (breakers, events),
        ) = await asyncio.gather(
            _counts_and_oldest(db),
            rates.attempt_rates(db),
            worker_lease_list(db),
            kind_list_paused(db),
            campaign_progress_open(db, OPEN_CAMPAIGNS),
            asyncio.gather(
                backend_breaker_list(db),
                dashboard_event_rates_kinds(db, deliverability.KIND_DAYS),
            ),
        )
    else:
        counts, oldest = await _counts_and_oldest(db)
        attempt = await rates.attempt_rates(db)
        workers = await worker_lease_list(db)
        paused = await kind_list_paused(db)
        progress = await campaign_progress_open(db, OPEN_CAMPAIGNS)
        breakers = await backend_breaker_list(db)
        events = await dashboard_event_rates_kinds(db, deliverability.KIND_DAYS)
    totals = {s: sum(k.counts.get(s, 0) for k in counts) for s in STATES}
    hour = charts.bar_chart("Last hour, per minute", attempt.last(60), "minute", 10)
    day = charts.bar_chart("Last 24 hours, per hour", attempt.hours(), "hour", 4)
    campaigns = campaign_rows(progress)
    return {
        "counts": counts,
        "totals": totals,
        "states": STATES,
        "oldest": oldest,
        "workers": workers,
        "paused": paused,
        "campaigns": campaigns,
        "hour": hour,
        "day": day,
        "uncounted": attempt.uncounted,
        "now": attempt.now,
        "breakers": breakers,
        "events": deliverability.kind_rates(events),
        "event_days": deliverability.KIND_DAYS,
    }


def render_regions(values: Mapping[str, Any]) -> dict[str, str]:
    return {name: render(f"overview/{name}.html", values) for name in REGIONS}


@page
async def overview(ctx: Context) -> Response:
    values = await snapshot(ctx.pool)
    return ctx.page("overview.html", "overview", regions=REGIONS, **values)


@page
async def live_json(ctx: Context) -> Response:
    """The polling fallback of the live updates: the same regions as the event stream."""
    values = await snapshot(ctx.pool)
    return JSONResponse(
        {"regions": render_regions({**values, "can_change": ctx.session.is_admin})},
        headers={k: v for k, v in PAGE_HEADERS.items() if k == "Cache-Control"},
    )
