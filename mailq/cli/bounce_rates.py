"""The bounce and complaint rates of `mailq status`: per kind (events of the last 14 days) and
per campaign, and the campaigns the bounce breaker paused, with the reason."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from mailq.bounces.rates import rates_view
from mailq.cli import display
from mailq.db.bounce_breakers import bounce_breaker_list
from mailq.db.events import event_rates

RATE_DAYS = 14
RECENT = timedelta(days=RATE_DAYS)  # a kind's breaker warning is shown this long
CAMPAIGNS_SHOWN = 20


async def rates_report(pool: asyncpg.Pool) -> dict[str, Any]:
    rows = await event_rates(pool, RATE_DAYS)
    breakers = await bounce_breaker_list(pool)
    campaigns = [r for r in rows if r["scope"] == "campaign"]
    campaigns.sort(key=lambda r: -int(r["campaign_id"]))
    return {
        "days": RATE_DAYS,
        "kinds": {r["kind"]: rates_view(r) for r in rows if r["scope"] == "kind"},
        "campaigns": [
            {"id": r["campaign_id"], "kind": r["kind"], **rates_view(r)}
            for r in campaigns[:CAMPAIGNS_SHOWN]
        ],
        "kind_warnings": [
            {"kind": b["key"], "reason": b["reason"], "tripped_at": b["tripped_at"]}
            for b in breakers
            if b["scope"] == "kind" and b["tripped_at"] > datetime.now(UTC) - RECENT
        ],
        "paused_by_bounces": [
            {"campaign_id": int(b["key"]), "reason": b["reason"], "tripped_at": b["tripped_at"]}
            for b in breakers
            if b["scope"] == "campaign" and b["campaign_status"] == "paused"
        ],
    }


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.2%}"


def rates_table(report: dict[str, Any]) -> Any:
    """One row per kind, then one per campaign that sent or heard back."""
    columns = [
        "kind / campaign",
        "sent",
        "delivered",
        "bounced",
        "hard",
        "complained",
        "hard rate",
        "complaint rate",
    ]

    def row(name: str, r: dict[str, Any]) -> list[object]:
        return [
            name,
            r["sent"],
            r["delivered"],
            r["bounced"],
            r["hard_bounced"] + r["rejected"],
            r["complained"],
            _percent(r["hard_bounce_rate"]),
            _percent(r["complaint_rate"]),
        ]

    rows = [row(kind, r) for kind, r in sorted(report["kinds"].items())]
    rows += [row(f"campaign {c['id']} ({c['kind']})", c) for c in report["campaigns"]]
    title = f"Bounces and complaints (kinds: last {report['days']} days; campaigns: all)"
    return display.table(title, columns, rows)


def paused_lines(report: dict[str, Any]) -> list[str]:
    warnings = [
        f"Warning: kind {w['kind']}: {w['reason']} (`mailq pause {w['kind']}` stops it)"
        for w in report["kind_warnings"]
    ]
    return warnings + [
        f"Campaign {p['campaign_id']} {p['reason']} "
        f"(resume with `POST /v1/campaigns/{p['campaign_id']}/resume` once the list is clean)"
        for p in report["paused_by_bounces"]
    ]


def print_rates(out: Any, report: dict[str, Any]) -> None:
    out.print(rates_table(report))
    for line in paused_lines(report):
        out.print(line)
