"""Bar charts as inline SVG geometry: the templates draw the rectangles computed here (no
chart library, no script)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from mailq.service.dashboard.rates import Minute

WIDTH = 600
HEIGHT = 140
AXIS = 1  # the base line (the labels are HTML below the chart)


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    width: float
    sent_y: float
    sent_h: float
    failed_y: float
    failed_h: float
    label: str  # the bar's tooltip


@dataclass(frozen=True, slots=True)
class Chart:
    title: str
    summary: str  # what a screen reader says for the whole chart
    bars: tuple[Bar, ...]
    peak: int
    ticks: tuple[tuple[float, str], ...]
    width: int = WIDTH
    height: int = HEIGHT
    axis: int = AXIS
    sent: int = 0
    failed: int = 0


# "waiting": queued or retrying, as the overview's campaigns count them (without reading them).
STATE_ORDER = ("sent", "sending", "queued", "waiting", "scheduled", "retrying", "unknown",
               "failed", "cancelled")  # fmt: skip


def progress_segments(progress: Mapping[str, int], total: int) -> list[dict[str, Any]]:
    """A campaign's progress bar: one segment per state, in percent of an SVG 100 wide."""
    out = []
    x = 0.0
    for state in STATE_ORDER:
        n = progress.get(state, 0)
        if not n or not total:
            continue
        width = 100.0 * n / total
        out.append({"state": state, "n": n, "x": round(x, 3), "width": round(width, 3)})
        x += width
    return out


def bar_chart(
    title: str, points: Sequence[Minute], unit: str, tick_every: int, last_label: str = "now"
) -> Chart:
    plot = HEIGHT - AXIS
    peak = max((p.sent + p.failed for p in points), default=0)
    scale = plot / peak if peak else 0.0
    step = WIDTH / max(1, len(points))
    gap = min(1.0, step * 0.2)
    bars = []
    ticks = []
    for i, p in enumerate(points):
        sent_h = p.sent * scale
        failed_h = p.failed * scale
        at = p.at.astimezone(UTC).strftime("%H:%M")
        bars.append(
            Bar(
                x=round(i * step + gap / 2, 2),
                width=round(max(0.5, step - gap), 2),
                sent_y=round(plot - sent_h, 2),
                sent_h=round(sent_h, 2),
                failed_y=round(plot - sent_h - failed_h, 2),
                failed_h=round(failed_h, 2),
                label=f"{at} UTC: {p.sent:,} sent, {p.failed:,} failed attempts per {unit}",
            )
        )
        if i % tick_every == 0:
            ticks.append((round(i * step, 2), at))
    ticks.append((float(WIDTH), last_label))
    sent = sum(p.sent for p in points)
    failed = sum(p.failed for p in points)
    summary = f"{title}: {sent:,} sent and {failed:,} failed attempts; busiest {unit} {peak:,}"
    return Chart(title, summary, tuple(bars), peak, tuple(ticks), sent=sent, failed=failed)
