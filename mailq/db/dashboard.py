"""The only caller of the dashboard's read statements (sql/dashboard.sql) and of its own two
small tables (mailq.attempt_rates, mailq.campaign_samples).

Every statement here reads the trigger-kept counts, the attempts (by time through
attempts_finished_brin, by email through their primary key), or the partial indexes of the
unfinished emails, and never walks the finished emails unbounded: tests/dashboard/
test_queries_plan.py checks each one's executed plan.

The overview reads what it shows in one statement (dashboard_overview: one round trip per
live update), its lists as JSON arrays decoded here; its campaigns' open emails are their
recipients (mailq.campaign_recipient_counts) less their finished ones.

The bounce and complaint rates divide the trigger-kept event counts (mailq.event_counts) by
the sent counts (mailq.finished_counts per kind, mailq.campaign_counts per campaign); the
backend circuit breaker is read through mailq.db.breakers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from mailq.db.connection import Executor
from mailq.db.queries import QUERIES

# The lists of dashboard_overview (JSON arrays) and, of each, the fields that are moments.
_OVERVIEW_TIMES: dict[str, tuple[str, ...]] = {
    "counts": (),
    "workers": ("started_at", "heartbeat_at"),
    "paused": ("paused_at",),
    "breakers": ("opened_at", "closed_at"),
    "events": (),
    "rate_minutes": ("minute",),
    "rate_live": ("minute",),
    "campaigns": ("send_at",),
}


@dataclass(frozen=True, slots=True)
class EmailFilter:
    """What the emails page searches by; None is "any"."""

    kind: str | None = None
    state: str | None = None
    address: str | None = None  # lower-case, exact
    domain: str | None = None  # lower-case
    campaign_id: int | None = None
    metadata: str | None = None  # a JSON object the metadata must contain
    created_from: datetime | None = None
    created_to: datetime | None = None

    def arguments(self) -> tuple[Any, ...]:
        return (
            self.kind,
            self.state,
            self.address,
            self.domain,
            self.campaign_id,
            self.metadata,
            self.created_from,
            self.created_to,
        )


def _dicts(rows: list[Any]) -> list[dict[str, Any]]:
    return [dict(r) for r in rows]


def _moment(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value).astimezone(UTC)


def _rows(text: str, times: Sequence[str]) -> list[dict[str, Any]]:
    """A JSON array of rows, its moments (ISO 8601 text) as datetimes."""
    return [{**r, **{t: _moment(r[t]) for t in times}} for r in orjson.loads(text)]


async def dashboard_overview(db: Executor, days: int, campaigns: int) -> dict[str, Any]:
    """What the overview shows, read in one statement: `now`, `oldest` (a row or None) and the
    lists of rows `counts`, `workers`, `paused`, `breakers`, `events` (delivery events of the
    last `days` days), `rate_minutes`, `rate_live` and `campaigns` (by state, of the newest
    `campaigns` open ones)."""
    row = await db.fetchrow(QUERIES["dashboard_overview"], days, campaigns)
    out: dict[str, Any] = {name: _rows(row[name], t) for name, t in _OVERVIEW_TIMES.items()}
    oldest = row["oldest"]
    out["oldest"] = None if oldest is None else _rows(f"[{oldest}]", ("run_at",))[0]
    out["now"] = row["now"]
    return out


async def dashboard_now(db: Executor) -> datetime:
    now: datetime = await db.fetchval(QUERIES["dashboard_now"])
    return now


async def dashboard_rate_minutes(db: Executor, since: datetime) -> list[dict[str, Any]]:
    return _dicts(await db.fetch(QUERIES["dashboard_rate_minutes"], since))


async def dashboard_rate_fill(db: Executor, start: datetime, end: datetime) -> None:
    await db.execute(QUERIES["dashboard_rate_fill"], start, end)


async def dashboard_rate_prune(db: Executor, before: datetime) -> None:
    await db.execute(QUERIES["dashboard_rate_prune"], before)


async def dashboard_email_max_id(db: Executor) -> int:
    return int(await db.fetchval(QUERIES["dashboard_email_max_id"]))


async def dashboard_email_id_at(db: Executor, moment: datetime, top: int) -> int:
    """The first id created at or after `moment`, of ids up to `top` (top + 1 if none)."""
    return int(await db.fetchval(QUERIES["dashboard_email_id_at"], moment, top))


async def dashboard_email_walk(
    db: Executor,
    where: EmailFilter,
    below: int,
    down_to: int,
    limit: int,
    statuses: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    rows = await db.fetch(
        QUERIES["dashboard_email_walk"],
        *where.arguments(),
        below,
        down_to,
        None if statuses is None else list(statuses),
        limit,
    )
    return _dicts(rows)


async def dashboard_email_cancellable(db: Executor, where: EmailFilter, limit: int) -> list[int]:
    rows = await db.fetch(QUERIES["dashboard_email_cancellable"], *where.arguments(), limit)
    return [r["id"] for r in rows]


async def dashboard_email_retryable(db: Executor, where: EmailFilter, limit: int) -> list[int]:
    rows = await db.fetch(QUERIES["dashboard_email_retryable"], *where.arguments(), limit)
    return [r["id"] for r in rows]


async def dashboard_email_lock(
    db: Executor, ids: Sequence[int], statuses: Sequence[str]
) -> list[int]:
    rows = await db.fetch(QUERIES["dashboard_email_lock"], list(ids), list(statuses))
    return [r["id"] for r in rows]


async def dashboard_email_detail(db: Executor, email_id: int) -> dict[str, Any] | None:
    row = await db.fetchrow(QUERIES["dashboard_email_detail"], email_id)
    return None if row is None else dict(row)


async def dashboard_unknown_list(db: Executor, after_id: int, limit: int) -> list[dict[str, Any]]:
    return _dicts(await db.fetch(QUERIES["dashboard_unknown_list"], after_id, limit))


async def dashboard_failure_groups(
    db: Executor, since: datetime, limit: int
) -> list[dict[str, Any]]:
    return _dicts(await db.fetch(QUERIES["dashboard_failure_groups"], since, limit))


async def dashboard_failure_group_emails(
    db: Executor,
    since: datetime,
    limit: int,
    *,
    code: int | None,
    without_code: bool,
    domain: str | None,
) -> list[dict[str, Any]]:
    rows = await db.fetch(
        QUERIES["dashboard_failure_group_emails"], since, limit, code, domain, without_code
    )
    return _dicts(rows)


async def dashboard_rate_buckets(db: Executor) -> list[dict[str, Any]]:
    return _dicts(await db.fetch(QUERIES["dashboard_rate_buckets"]))


async def dashboard_campaign_sample(
    db: Executor, campaign_id: int, finished: int, every_s: float
) -> None:
    await db.execute(QUERIES["dashboard_campaign_sample"], campaign_id, finished, every_s)


async def dashboard_campaign_rate(
    db: Executor, campaign_id: int, window_s: float
) -> tuple[int, float] | None:
    row = await db.fetchrow(QUERIES["dashboard_campaign_rate"], campaign_id, window_s)
    return None if row is None else (int(row["finished"]), float(row["age_s"]))


async def dashboard_campaign_sample_prune(db: Executor, older_than_s: float) -> None:
    await db.execute(QUERIES["dashboard_campaign_sample_prune"], older_than_s)


async def dashboard_campaign_progress(
    db: Executor, campaign_ids: Sequence[int]
) -> dict[int, dict[str, int]]:
    """Campaigns by state from their counts (`waiting`: queued or retrying), by id."""
    out: dict[int, dict[str, int]] = {i: {} for i in campaign_ids}
    for r in await db.fetch(QUERIES["dashboard_campaign_progress"], list(campaign_ids)):
        out[r["campaign_id"]][r["state"]] = int(r["count"])
    return out


async def dashboard_event_rates_campaign(db: Executor, campaign_id: int) -> dict[str, Any] | None:
    """A campaign's sent emails and delivery events by outcome, and the bounce breaker's
    reason when it paused the campaign; None: no such campaign."""
    row = await db.fetchrow(QUERIES["dashboard_event_rates_campaign"], campaign_id)
    return None if row is None else dict(row)
