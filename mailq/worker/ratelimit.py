"""Rate limits shared by every worker process, coordinated through Postgres.

Each limit is a token bucket row in mailq.rate_buckets (see mailq.kinds.RateLimit): a kind's
own (`kind:<name>`) and the backend's as a whole (`backend`). Before a claim, a worker takes
tokens for the emails it means to claim, in one short transaction that locks the buckets;
after the claim it gives back the tokens of emails that were not there. Taking under a row
lock makes the limit hold for all workers together: over any window of T seconds at most
`burst + rate * T` emails of a limited kind (or of the backend) start.

A provider's request to wait (an HTTP 429 with Retry-After) empties the backend's bucket for
that long (`hold_backend`): every worker, not only the one that got the 429, slows down.

`welcome` is served first from the backend's bucket: other kinds only take a token while
more than `reserve` are left, so a campaign never makes a welcome email wait for its budget.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import asyncpg

from mailq.db.connection import Executor
from mailq.db.rate_buckets import (
    rate_bucket_configure,
    rate_bucket_hold,
    rate_bucket_lock,
    rate_bucket_refund,
    rate_bucket_store,
)
from mailq.kinds import WELCOME, KindPolicy, RateLimit

BACKEND = "backend"
_EPSILON = 1e-9


def bucket_name(kind: str) -> str:
    return f"kind:{kind}"


@dataclass(frozen=True, slots=True)
class Bucket:
    """A bucket as read under its lock: tokens refilled up to the read."""

    name: str
    rate: float
    burst: float
    reserve: float
    tokens: float


@dataclass(frozen=True, slots=True)
class Grant:
    """Emails of each kind a worker may start now, and when to ask again if short."""

    allowed: dict[str, int]
    taken: dict[str, float] = field(default_factory=dict)  # tokens taken per bucket
    wait_s: float | None = None


def allocate(wants: Sequence[tuple[str, int]], buckets: Mapping[str, Bucket]) -> Grant:
    """Share the buckets' tokens among the kinds wanted, in the order given (welcome first).

    A kind without a bucket of its own and no backend bucket is not limited. Returns how
    many of each kind may start, the tokens taken from each bucket, and, when a kind got
    fewer than it wanted, the seconds until its next token.
    """
    left = {name: b.tokens for name, b in buckets.items()}
    backend = buckets.get(BACKEND)
    allowed: dict[str, int] = {}
    waits: list[float] = []
    for kind, want in wants:
        n = want
        own = buckets.get(bucket_name(kind))
        if own is not None:
            n = min(n, math.floor(left[own.name] + _EPSILON))
        floor_left = 0.0
        if backend is not None:
            floor_left = 0.0 if kind == WELCOME else backend.reserve
            n = min(n, math.floor(left[BACKEND] - floor_left + _EPSILON))
        n = max(n, 0)
        allowed[kind] = n
        if own is not None:
            left[own.name] -= n
        if backend is not None:
            left[BACKEND] -= n
        if n < want:
            waits.append(_next_token_s(own, left, backend, floor_left))
    taken = {name: buckets[name].tokens - left[name] for name in buckets}
    return Grant(allowed, {k: v for k, v in taken.items() if v > 0}, min(waits, default=None))


def _next_token_s(
    own: Bucket | None, left: Mapping[str, float], backend: Bucket | None, floor_left: float
) -> float:
    wait = 0.0
    if own is not None:
        wait = max(wait, (1.0 - left[own.name]) / own.rate)
    if backend is not None:
        wait = max(wait, (floor_left + 1.0 - left[BACKEND]) / backend.rate)
    return max(wait, 0.001)


def limits_of(kinds: Sequence[KindPolicy], backend: RateLimit | None) -> dict[str, RateLimit]:
    """The buckets a worker of these kinds uses, by name."""
    limits = {bucket_name(k.name): k.rate_limit for k in kinds if k.rate_limit is not None}
    if backend is not None:
        limits[BACKEND] = backend
    return limits


class RateLimiter:
    """One worker's side of the shared buckets."""

    def __init__(self, limits: Mapping[str, RateLimit]) -> None:
        self.limits = dict(limits)

    @property
    def active(self) -> bool:
        return bool(self.limits)

    @property
    def applies_to_backend(self) -> bool:
        """A backend rate limit is configured (its bucket can be held)."""
        return BACKEND in self.limits

    def applies_to(self, kind: str) -> bool:
        return BACKEND in self.limits or bucket_name(kind) in self.limits

    async def configure(self, db: Executor) -> None:
        """Create the buckets (full), or update their rate and burst (workers start with the
        same config; the last one to start wins)."""
        if self.limits:
            names = sorted(self.limits)
            await rate_bucket_configure(
                db,
                names,
                [self.limits[n].rate for n in names],
                [self.limits[n].burst for n in names],
                [self.limits[n].reserve for n in names],
            )

    async def acquire(self, pool: asyncpg.Pool, wants: Sequence[tuple[str, int]]) -> Grant:
        """Take tokens for up to `wants` emails (kinds in serving order)."""
        limited = [(k, n) for k, n in wants if n > 0 and self.applies_to(k)]
        allowed = {k: n for k, n in wants}
        if not limited:
            return Grant(allowed)
        names = sorted({bucket_name(k) for k, _ in limited} & set(self.limits))
        if BACKEND in self.limits:
            names.append(BACKEND)
        async with pool.acquire() as conn, conn.transaction():
            rows, read_at = await rate_bucket_lock(conn, sorted(names))
            buckets = {r["name"]: Bucket(**r) for r in rows}
            grant = allocate(limited, buckets)
            if grant.taken:
                await rate_bucket_store(
                    conn,
                    list(grant.taken),
                    [buckets[n].tokens - grant.taken[n] for n in grant.taken],
                    read_at,
                )
        allowed.update(grant.allowed)
        return Grant(allowed, grant.taken, grant.wait_s)

    async def refund(self, db: Executor, unused: Mapping[str, int]) -> None:
        """Give back the tokens of `unused` emails per kind (taken, but none was due)."""
        back: dict[str, float] = {}
        for kind, n in unused.items():
            if n <= 0 or not self.applies_to(kind):
                continue
            if bucket_name(kind) in self.limits:
                back[bucket_name(kind)] = back.get(bucket_name(kind), 0) + n
            if BACKEND in self.limits:
                back[BACKEND] = back.get(BACKEND, 0) + n
        if back:
            await rate_bucket_refund(db, list(back), list(back.values()))

    async def hold_backend(self, db: Executor, seconds: float) -> bool:
        """The backend asked to wait `seconds`: its bucket gives no token until then (shared
        by all workers). False when no backend rate limit is configured (there is no bucket
        to hold: only the refused email waits)."""
        if BACKEND not in self.limits or seconds <= 0:
            return False
        await rate_bucket_hold(db, BACKEND, seconds)
        return True
