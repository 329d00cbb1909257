"""Bounce and complaint rates as the pages draw them: each rate on a gauge against its lines
(Gmail's 0.1% and 0.3% spam rates for complaints, and the campaign pause limits of the
`[bounces]` policy of MAILQ_CONFIG, `[kinds.X.bounces]` for a kind with its own), from the
trigger-kept counts (mailq.event_counts over mailq.finished_counts or mailq.campaign_counts)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mailq.bounces.policy import DEFAULT_POLICY, BouncePolicy
from mailq.bounces.recorder import BounceRules
from mailq.service.state import Service

# Gmail's bulk-sender guidelines: keep the spam (complaint) rate under 0.1%, never reach 0.3%.
GMAIL_COMPLAINT_KEEP_UNDER = 0.001
GMAIL_COMPLAINT_NEVER = 0.003
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
    # Its pause limits: past either rate, once pause_min_sent were sent, a campaign pauses.
    policy: BouncePolicy = DEFAULT_POLICY

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
        return gauge(self.bounce_rate, ((self.policy.pause_hard_bounce_rate, "pause limit"),))

    @property
    def complaint_gauge(self) -> Gauge:
        return gauge(self.complaint_rate, complaint_lines(self.policy.pause_complaint_rate))

    @property
    def judged(self) -> bool:
        """Whether the pause limit applies yet (enough sent)."""
        return self.sent >= self.policy.pause_min_sent


def bounce_rules(service: Service) -> BounceRules:
    """The pause limits of every kind, as the bounce recorder applies them."""
    return BounceRules(service.config.bounces, service.config.kind_bounces)


def complaint_lines(pause_rate: float) -> tuple[tuple[float, str], ...]:
    """Gmail's two lines and the pause limit (one line with Gmail's 0.3% when they agree)."""
    gmail = {GMAIL_COMPLAINT_KEEP_UNDER: "Gmail 0.1%", GMAIL_COMPLAINT_NEVER: "Gmail 0.3%"}
    if pause_rate in gmail:
        gmail[pause_rate] += ", pause limit"
    else:
        gmail[pause_rate] = "pause limit"
    return tuple(sorted(gmail.items()))


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


def rates_of(name: str, row: Mapping[str, Any], policy: BouncePolicy = DEFAULT_POLICY) -> Rates:
    return Rates(
        name,
        int(row["sent"]),
        int(row["delivered"]),
        int(row["hard_bounced"]),
        int(row["soft_bounced"]),
        int(row["rejected"]),
        int(row["complained"]),
        int(row["unsubscribed"]),
        policy,
    )


def kind_rates(rows: Sequence[Mapping[str, Any]], rules: BounceRules) -> list[Rates]:
    """One entry per kind (against its own limits), then all of them together (first, against
    `[bounces]`) when there are several."""
    kinds = [rates_of(str(r["kind"]), r, rules.for_kind(str(r["kind"]))) for r in rows]
    if len(kinds) < 2:
        return kinds
    fields = ("sent", "delivered", "hard_bounced", "soft_bounced", "rejected", "complained",
              "unsubscribed")  # fmt: skip
    total = {f: sum(getattr(k, f) for k in kinds) for f in fields}
    return [rates_of("all kinds", total, rules.default), *kinds]


def percent(rate: float | None) -> str:
    """A rate as the pages print it: 0.12%, 4.3%, a dash without anything sent."""
    if rate is None:
        return "\N{EN DASH}"
    value = rate * 100
    return f"{value:.2f}%" if value < 1 else f"{value:.1f}%"
