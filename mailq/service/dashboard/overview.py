"""The overview: counts per kind and state (the trigger-kept counts and the partial indexes
of mailq.queue_stats), send and failure rates, the oldest due email, live workers, paused
kinds and campaigns, the backend circuit breakers, bounce and complaint rates per kind, all
read in one statement (dashboard_overview). Its live regions are rendered here both for the
page and for the server-sent updates (live.py)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from starlette.responses import JSONResponse, Response

from mailq.bounces.recorder import BounceRules
from mailq.db.connection import Executor
from mailq.db.dashboard import dashboard_overview
from mailq.models import EmailState
from mailq.service.dashboard import charts, deliverability, rates
from mailq.service.dashboard.guard import Context, page
from mailq.service.dashboard.render import PAGE_HEADERS, render

STATES = tuple(s.value for s in EmailState)
# "waiting": the overview's campaigns count their waiting emails without telling queued from
# retrying ones (dashboard_overview).
OPEN_STATES = ("scheduled", "queued", "retrying", "waiting", "sending", "unknown")
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


async def snapshot(db: Executor, rules: BounceRules | None = None) -> dict[str, Any]:
    """Everything the overview's live regions show: one statement (dashboard_overview), and
    the rollup's counting of minutes it lacks while a day of history is new to it. `rules`:
    the pause limits the bounce gauges show (SPEC.md's defaults when None)."""
    found = await dashboard_overview(db, deliverability.KIND_DAYS, OPEN_CAMPAIGNS)
    attempt = await rates.attempt_rates(db, found["now"], found["rate_minutes"], found["rate_live"])
    counts = count_table(found["counts"])
    totals = {s: sum(k.counts.get(s, 0) for k in counts) for s in STATES}
    hour = charts.bar_chart("Last hour, per minute", attempt.last(60), "minute", 10)
    day = charts.bar_chart("Last 24 hours, per hour", attempt.hours(), "hour", 4)
    campaigns = campaign_rows(found["campaigns"])
    return {
        "counts": counts,
        "totals": totals,
        "states": STATES,
        "oldest": found["oldest"],
        "workers": found["workers"],
        "paused": found["paused"],
        "campaigns": campaigns,
        "hour": hour,
        "day": day,
        "uncounted": attempt.uncounted,
        "now": attempt.now,
        "breakers": found["breakers"],
        "events": deliverability.kind_rates(found["events"], rules or BounceRules()),
        "event_days": deliverability.KIND_DAYS,
    }


def render_regions(values: Mapping[str, Any]) -> dict[str, str]:
    return {name: render(f"overview/{name}.html", values) for name in REGIONS}


@page
async def overview(ctx: Context) -> Response:
    values = await snapshot(ctx.pool, deliverability.bounce_rules(ctx.service))
    return ctx.page("overview.html", "overview", regions=REGIONS, **values)


@page
async def live_json(ctx: Context) -> Response:
    """The polling fallback of the live updates: the same regions as the event stream."""
    values = await snapshot(ctx.pool, deliverability.bounce_rules(ctx.service))
    return JSONResponse(
        {"regions": render_regions({**values, "can_change": ctx.session.is_admin})},
        headers={k: v for k, v in PAGE_HEADERS.items() if k == "Cache-Control"},
    )
