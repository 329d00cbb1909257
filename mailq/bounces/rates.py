"""Bounce and complaint rates: counts of mailq.bounce_rates (or event_rates_campaign) with
their ratios to the emails sent. Shared by `mailq status`, the API and the dashboard."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

COUNTS = (
    "sent",
    "delivered",
    "hard_bounced",
    "soft_bounced",
    "rejected",
    "complained",
    "unsubscribed",
    "deferred",
)


def rates_view(row: Mapping[str, Any] | None) -> dict[str, Any]:
    """The counts and ratios of one row (zeros without one; ratios None before any send).
    `bounced` is hard + soft + rejected (refusals about the sender); `hard_bounce_rate`
    counts hard bounces and refusals about the sender, as the campaign breaker does."""
    counts = {name: int((row or {}).get(name) or 0) for name in COUNTS}
    sent = counts["sent"]
    bounced = counts["hard_bounced"] + counts["soft_bounced"] + counts["rejected"]

    def ratio(n: int) -> float | None:
        return round(n / sent, 6) if sent else None

    return {
        **counts,
        "bounced": bounced,
        "delivered_rate": ratio(counts["delivered"]),
        "bounce_rate": ratio(bounced),
        "hard_bounce_rate": ratio(counts["hard_bounced"] + counts["rejected"]),
        "complaint_rate": ratio(counts["complained"]),
    }
