"""Bounce and complaint rates as the pages draw them: each rate on a gauge against its lines
(Gmail's 0.1% and 0.3% spam rates for complaints, the campaign pause limits of SPEC.md's
`[bounces]` policy for bounces), from the trigger-kept counts (mailq.event_counts over
mailq.finished_counts or mailq.campaign_counts)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# Gmail's bulk-sender guidelines: keep the spam (complaint) rate under 0.1%, never reach 0.3%.
GMAIL_COMPLAINT_KEEP_UNDER = 0.001
GMAIL_COMPLAINT_NEVER = 0.003
# The campaign pause limits (SPEC.md "Bounces and complaints", the [bounces] defaults): past
# either rate, once this many were sent, a campaign pauses itself.
PAUSE_MIN_SENT = 500
PAUSE_HARD_BOUNCE_RATE = 0.05
PAUSE_COMPLAINT_RATE = 0.003
# Kinds' events are counted over the days the retention keeps their sent emails (the
# default retention; mailq.bounces uses the same window).
KIND_DAYS = 14
# Each gauge shows up to this many times its highest line (or the rate, when higher).
GAUGE_HEADROOM = 5 / 3


@dataclass(frozen=True, slots=True)
class Gauge:
    """A rate on a 0..scale bar; `marks` are the lines (x in percent of the bar, label)."""

    rate: float | None
    x: float
    marks: tuple[tuple[float, str], ...]
    level: str  # ok, warn, bad (past the highest line), none (nothing sent)


@dataclass(frozen=True, slots=True)
class Rates:
    name: str
    sent: int
    delivered: int
    hard_bounced: int
    soft_bounced: int
    rejected: int
    complained: int
    unsubscribed: int

    @property
    def bounced(self) -> int:
        """What the pause limit counts: hard bounces and refusals about the sender."""
        return self.hard_bounced + self.rejected

    @property
    def bounce_rate(self) -> float | None:
        return self.bounced / self.sent if self.sent else None

    @property
    def complaint_rate(self) -> float | None:
        return self.complained / self.sent if self.sent else None

    @property
    def bounce_gauge(self) -> Gauge:
        return gauge(self.bounce_rate, ((PAUSE_HARD_BOUNCE_RATE, "pause limit"),))

    @property
    def complaint_gauge(self) -> Gauge:
        lines = ((GMAIL_COMPLAINT_KEEP_UNDER, "Gmail 0.1%"), (GMAIL_COMPLAINT_NEVER, "Gmail 0.3%"))
        return gauge(self.complaint_rate, lines)

    @property
    def judged(self) -> bool:
        """Whether the pause limit applies yet (enough sent)."""
        return self.sent >= PAUSE_MIN_SENT


def gauge(rate: float | None, lines: Sequence[tuple[float, str]]) -> Gauge:
    top = max(v for v, _ in lines)
    scale = max(top * GAUGE_HEADROOM, (rate or 0.0) * 1.1)
    marks = tuple((round(100 * v / scale, 2), label) for v, label in lines)
    if rate is None:
        level = "none"
    elif rate >= top:
        level = "bad"
    elif rate >= min(v for v, _ in lines) and len(lines) > 1:
        level = "warn"
    else:
        level = "ok"
    x = 0.0 if rate is None else round(100 * rate / scale, 2)
    return Gauge(rate, x, marks, level)


def rates_of(name: str, row: Mapping[str, Any]) -> Rates:
    return Rates(
        name,
        int(row["sent"]),
        int(row["delivered"]),
        int(row["hard_bounced"]),
        int(row["soft_bounced"]),
        int(row["rejected"]),
        int(row["complained"]),
        int(row["unsubscribed"]),
    )


def kind_rates(rows: Sequence[Mapping[str, Any]]) -> list[Rates]:
    """One entry per kind, then all of them together (first) when there are several."""
    kinds = [rates_of(str(r["kind"]), r) for r in rows]
    if len(kinds) < 2:
        return kinds
    fields = ("sent", "delivered", "hard_bounced", "soft_bounced", "rejected", "complained",
              "unsubscribed")  # fmt: skip
    total = {f: sum(getattr(k, f) for k in kinds) for f in fields}
    return [rates_of("all kinds", total), *kinds]


def percent(rate: float | None) -> str:
    """A rate as the pages print it: 0.12%, 4.3%, a dash without anything sent."""
    if rate is None:
        return "\N{EN DASH}"
    value = rate * 100
    return f"{value:.2f}%" if value < 1 else f"{value:.1f}%"
