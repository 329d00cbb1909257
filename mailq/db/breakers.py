"""The only caller of the backend circuit-breaker statements (sql/backend_breakers.sql)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from mailq.db.connection import Executor
from mailq.db.queries import QUERIES


@dataclass(frozen=True, slots=True)
class BreakerView:
    """A breaker as one worker sees it: open or not, and when its next probe is due."""

    open: bool
    probe_in_s: float


@dataclass(frozen=True, slots=True)
class Closed:
    """What the call that closed a breaker learns: how long it was open, what it deferred."""

    open_s: float
    deferred: int
    probes: int


async def backend_breaker_trip(
    db: Executor, backend: str, error: str, *, base_s: float, cap_s: float, factor: float
) -> tuple[bool, float]:
    """Open the breaker (or count one more deferral); (whether this call opened it, seconds
    until its probe is due)."""
    row = await db.fetchrow(QUERIES["backend_breaker_trip"], backend, error, base_s, cap_s, factor)
    return bool(row["opened"]), float(row["probe_in_s"])


async def backend_breaker_get(db: Executor, backend: str) -> BreakerView:
    row = await db.fetchrow(QUERIES["backend_breaker_get"], backend)
    if row is None:
        return BreakerView(False, 0.0)
    return BreakerView(bool(row["open"]), float(row["probe_in_s"]))


async def backend_breaker_take_probe(
    db: Executor, backend: str, worker_id: uuid.UUID, hold_s: float
) -> bool:
    """True when this worker may probe now (nobody else is)."""
    took = await db.fetchval(QUERIES["backend_breaker_take_probe"], backend, worker_id, hold_s)
    return took is not None


async def backend_breaker_probe_failed(
    db: Executor, backend: str, worker_id: uuid.UUID, error: str, *, factor: float, cap_s: float
) -> float | None:
    """Seconds until the next probe; None when the probe was no longer this worker's."""
    value = await db.fetchval(
        QUERIES["backend_breaker_probe_failed"], backend, worker_id, error, factor, cap_s
    )
    return None if value is None else float(value)


async def backend_breaker_close(db: Executor, backend: str) -> Closed | None:
    """Close the breaker; what it was, when this call closed it (None: it was not open)."""
    row = await db.fetchrow(QUERIES["backend_breaker_close"], backend)
    if row is None:
        return None
    return Closed(float(row["open_s"]), int(row["deferred"]), int(row["probes"]))


async def backend_breaker_list(db: Executor) -> list[dict[str, Any]]:
    return [dict(r) for r in await db.fetch(QUERIES["backend_breaker_list"])]
