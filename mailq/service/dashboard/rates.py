"""Send and failure rates for the charts: attempts per minute over the last hour and day.

Closed minutes come from the rollup mailq.attempt_rates; a minute missing from it is counted
once from mailq.attempts (found by time through a BRIN index) and stored, newest first,
for at most FILL_BUDGET_S per call, so that the first look at a busy day's history spreads
its counting over a few refreshes instead of one slow page. The minutes not closed yet are
counted live. Campaign rates come from samples of their finished counts (campaign_rate).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from mailq.db.connection import Executor
from mailq.db.dashboard import (
    dashboard_campaign_rate,
    dashboard_campaign_sample,
    dashboard_campaign_sample_prune,
    dashboard_rate_fill,
    dashboard_rate_minutes,
    dashboard_rate_prune,
)

MINUTE = timedelta(minutes=1)
# A minute is counted into the rollup this long after it ended (an outcome's attempt is
# stamped with its transaction's start, which commits a moment later).
CLOSE_LAG = timedelta(minutes=2)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
KEEP = timedelta(days=8)
# Minutes counted per statement: doubled while statements are quick, halved when slow.
FILL_CHUNK_MIN = timedelta(minutes=15)
FILL_CHUNK_FIRST = timedelta(hours=1)
FILL_CHUNK_MAX = timedelta(hours=24)
FILL_BUDGET_S = 0.05
CAMPAIGN_SAMPLE_EVERY_S = 15.0
CAMPAIGN_RATE_WINDOW_S = 600.0
CAMPAIGN_RATE_MIN_AGE_S = 20.0
CAMPAIGN_SAMPLES_KEEP_S = 86400.0


@dataclass(frozen=True, slots=True)
class Minute:
    at: datetime
    sent: int = 0
    failed: int = 0  # retry + failed + lost: attempts that did not deliver


@dataclass(slots=True)
class Rates:
    now: datetime
    # From the start of the hour 23 hours ago up to this minute, oldest first.
    minutes: list[Minute] = field(default_factory=list)
    uncounted: int = 0  # closed minutes not in the rollup yet (a later refresh counts them)

    def last(self, count: int) -> list[Minute]:
        return self.minutes[-count:]

    def hours(self) -> list[Minute]:
        """The day in 24 clock hours, oldest first (the last one is the hour in progress)."""
        out = []
        for start in range(0, len(self.minutes), 60):
            chunk = self.minutes[start : start + 60]
            out.append(
                Minute(chunk[0].at, sum(m.sent for m in chunk), sum(m.failed for m in chunk))
            )
        return out


def _floor(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


async def attempt_rates(
    db: Executor,
    now: datetime,
    stored_rows: Sequence[Mapping[str, Any]],
    live_rows: Sequence[Mapping[str, Any]],
    *,
    fill: bool = True,
) -> Rates:
    """The day's rates from what dashboard_overview read at `now`: the rollup's minutes from
    the start of the hour 23 hours ago, and the attempts of the minutes not closed yet. With
    `fill`, closed minutes missing from the rollup are counted first (within the budget)."""
    current = _floor(now)
    start = current.replace(minute=0) - DAY + HOUR
    closed_until = _floor(now - CLOSE_LAG)
    stored = {r["minute"]: r for r in stored_rows}
    missing = []
    moment = closed_until - MINUTE
    while moment >= start:
        if moment not in stored:
            missing.append(moment)
        moment -= MINUTE
    if fill and missing:
        filled = await _fill(db, missing)
        if filled:
            stored = {r["minute"]: r for r in await dashboard_rate_minutes(db, start)}
    live = {r["minute"]: r for r in live_rows}
    rates = Rates(now)
    moment = start
    while moment <= current:
        row = stored.get(moment) if moment < closed_until else live.get(moment)
        if row is None:
            rates.minutes.append(Minute(moment))
            if moment < closed_until:
                rates.uncounted += 1
        else:
            failed = int(row["retry"]) + int(row["failed"]) + int(row["lost"])
            rates.minutes.append(Minute(moment, int(row["sent"]), failed))
        moment += MINUTE
    return rates


async def _fill(db: Executor, missing: list[datetime]) -> int:
    """Count missing minutes (newest first, in runs of consecutive minutes) until the time
    budget is spent; returns how many were counted."""
    began = time.perf_counter()
    counted = 0
    index = 0
    chunk = FILL_CHUNK_FIRST
    while index < len(missing) and time.perf_counter() - began < FILL_BUDGET_S:
        end = missing[index] + MINUTE
        begin = missing[index]
        index += 1
        # Extend the run downwards while minutes are consecutive, up to one chunk.
        while index < len(missing) and missing[index] == begin - MINUTE and end - begin < chunk:
            begin = missing[index]
            index += 1
        started = time.perf_counter()
        await dashboard_rate_fill(db, begin, end)
        took = time.perf_counter() - started
        counted += int((end - begin) / MINUTE)
        if took < FILL_BUDGET_S / 8:
            chunk = min(FILL_CHUNK_MAX, chunk * 2)
        elif took > FILL_BUDGET_S / 2:
            chunk = max(FILL_CHUNK_MIN, chunk / 2)
    if counted:
        await dashboard_rate_prune(db, _floor(missing[0]) - KEEP)
    return counted


@dataclass(frozen=True, slots=True)
class CampaignPace:
    per_minute: float | None  # None: not measured yet (the page must stay open a little)
    eta_s: float | None


async def campaign_pace(
    db: Executor, campaign_id: int, finished: int, remaining: int
) -> CampaignPace:
    """Note the campaign's finished count, and its rate from the oldest note of the last
    ten minutes."""
    await dashboard_campaign_sample(db, campaign_id, finished, CAMPAIGN_SAMPLE_EVERY_S)
    sample = await dashboard_campaign_rate(db, campaign_id, CAMPAIGN_RATE_WINDOW_S)
    if sample is None or sample[1] < CAMPAIGN_RATE_MIN_AGE_S:
        return CampaignPace(None, None)
    before, age_s = sample
    per_s = max(0, finished - before) / age_s
    eta = remaining / per_s if per_s > 0 else None
    return CampaignPace(per_s * 60, eta)


async def prune_campaign_samples(db: Executor) -> None:
    await dashboard_campaign_sample_prune(db, CAMPAIGN_SAMPLES_KEEP_S)
