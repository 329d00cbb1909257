"""The claim's statements on mailq.emails (sql/emails.sql): the claim, the next due time
and the count of what is due, each scanning the claim index from start keys (ScanStarts)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from mailq.db.connection import Executor
from mailq.db.queries import QUERIES
from mailq.kinds import ClaimPlan
from mailq.models import CLAIMED_COLUMNS, ClaimedEmail


@dataclass(frozen=True, slots=True)
class ScanStarts:
    """Where each (kind, priority) scan of the claim index starts: after the key
    (run_at[j], id[j]) for kind i (of the kinds the statement is given) and priority p,
    j = i * 10 + p; None: from the start. Built by mailq.worker.claim_starts."""

    run_at: list[datetime | None]
    id: list[int | None]

    @classmethod
    def from_start(cls) -> ScanStarts:
        return cls([], [])


class Claimed(list[ClaimedEmail]):
    """The emails one claim took; `last` is the key (run_at, id) of the last one claimed
    per (kind, priority): where the next scan of each may start."""

    def __init__(
        self,
        emails: Sequence[ClaimedEmail] = (),
        last: dict[tuple[str, int], tuple[datetime, int]] | None = None,
    ) -> None:
        super().__init__(emails)
        self.last = last or {}


async def email_claim_due(
    db: Executor,
    plan: ClaimPlan,
    worker_id: uuid.UUID,
    now: datetime | None = None,
    backend: str | None = None,
    starts: ScanStarts | None = None,
) -> Claimed:
    """Claim what the plan allows; nothing while `backend`'s circuit breaker is open. Each
    (kind, priority) is scanned after its key in `starts` (default: from the start)."""
    if plan.total <= 0 or not plan.kinds:
        return Claimed()
    starts = starts or ScanStarts.from_start()
    rows = await db.fetch(
        QUERIES["email_claim_due"],
        plan.kinds,
        plan.limits,
        worker_id,
        now,
        plan.total,
        backend,
        starts.run_at,
        starts.id,
    )
    if rows and tuple(rows[0].keys()) != CLAIMED_COLUMNS:
        raise RuntimeError(  # a statement and its reader out of step: a bug of mailq's
            f"email_claim_due returns {tuple(rows[0].keys())}, "
            f"ClaimedEmail.from_row reads {CLAIMED_COLUMNS}"
        )
    last: dict[tuple[str, int], tuple[datetime, int]] = {}
    for r in rows:  # by position, as from_row: id 0, kind 1, priority 2, run_at 15
        key, end = (r[1], r[2]), (r[15], r[0])
        if key not in last or end > last[key]:
            last[key] = end
    return Claimed([ClaimedEmail.from_row(r) for r in rows], last)


async def email_next_due(
    db: Executor, kinds: Sequence[str], starts: ScanStarts | None = None
) -> float | None:
    """Seconds until the next waiting email of these kinds is due (None: none waits), each
    (kind, priority) looked at after its key in `starts` (default: all of it)."""
    starts = starts or ScanStarts.from_start()
    value = await db.fetchval(QUERIES["email_next_due"], list(kinds), starts.run_at, starts.id)
    return None if value is None else float(value)


async def email_count_due(
    db: Executor, kinds: Sequence[str], caps: Sequence[int], starts: ScanStarts | None = None
) -> dict[str, int]:
    """Emails due now per kind, each counted up to its cap (after the keys in `starts`)."""
    starts = starts or ScanStarts.from_start()
    rows = await db.fetch(
        QUERIES["email_count_due"], list(kinds), list(caps), starts.run_at, starts.id
    )
    return {r["kind"]: r["due"] for r in rows}
