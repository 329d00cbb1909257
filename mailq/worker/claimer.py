"""The claim loop: takes due emails in batches into the worker's free slots.

A worker claims ahead: it holds up to twice its concurrency in claimed emails (at most
PREFETCH_MAX more than its concurrency). The slot ledger lets only `concurrency` of them be
sending at a time, so the bound on what a kill -9 sends twice stays; the others wait to
start. With that buffer to draw from, it claims once the buffer has room for half a claim,
instead of claiming the few slots each committed outcome frees: fewer, larger claims, and
the lanes do not wait for one. It claims at once when woken for news (a NOTIFY, a due
time, the poll interval: a welcome must not wait for the buffer) or when the lanes could
run short. Under a rate limit it claims no further ahead than its concurrency (a token is
taken when the email is claimed: claiming ahead would let sends bunch up past the limit).

Each turn shares the free slots among the worker's kinds (mailq.kinds.plan_claim), takes
rate-limit tokens for what it means to claim, claims with SKIP LOCKED, hands the claimed
emails to the send lanes and learns when the next email is due. Between turns it sleeps
until woken: by NOTIFY (through the control connection), by a slot coming free, at the next
due time, and at the latest every poll interval.

While the backend's circuit breaker is open (mailq.delivery.breaker) it claims nothing: it
probes the backend when the probe is due (one worker at a time), and sleeps until then.

Each claim scans the claim index from where this worker's last claim of that kind and
priority ended, and from the start every few seconds (mailq.worker.claim_starts: what
keeps the claim fast while a long transaction holds vacuum back).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Sequence

import asyncpg

from mailq.db.claims import ScanStarts, email_claim_due, email_count_due, email_next_due
from mailq.db.emails import email_release_orphans
from mailq.db.leases import WorkerIdentity
from mailq.delivery.breaker import Breaker
from mailq.kinds import ClaimPlan, KindPolicy, plan_claim
from mailq.models import ClaimedEmail
from mailq.settings import Settings
from mailq.worker.backoff import Backoff
from mailq.worker.claim_starts import ClaimStarts
from mailq.worker.lanes import Lanes
from mailq.worker.lease import LeaseProof
from mailq.worker.ratelimit import RateLimiter
from mailq.worker.slots import SlotLedger

logger = logging.getLogger(__name__)

# Most emails one claim takes; smaller than a large concurrency so claims and sends overlap.
CLAIM_BATCH_MAX = 100
# Claimed emails a worker may hold beyond its concurrency (as many again, up to this), not
# started yet. Bounded: a killed worker's claims wait for its lease to expire, and each is
# taken back with a `lost` attempt, started or not.
PREFETCH_MAX = CLAIM_BATCH_MAX


class Wakeup:
    """What the claim loop sleeps on between turns; anyone may wake it, now or later."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        # New work may be due (a NOTIFY, a due time, a (re)connection): claim whatever the
        # buffer holds. Slots coming free alone do not set it.
        self.news = True

    def wake(self) -> None:
        self._event.set()

    def wake_for_news(self) -> None:
        self.news = True
        self._event.set()

    def wake_in(self, due_in: float) -> None:
        """Wake at a due time `due_in` seconds away (a NOTIFY payload)."""
        if due_in <= 0:
            self.wake_for_news()
        else:
            asyncio.get_running_loop().call_later(due_in, self.wake_for_news)

    def clear(self) -> None:
        self._event.clear()

    async def sleep(self, timeout: float) -> None:
        """Until woken, or `timeout` seconds."""
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
        except TimeoutError:
            self.news = True  # the poll interval or a due time: look for work


class Claimer:
    """Owns the claim plan's turn, the rate-limit tokens and the next due time."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        identity: WorkerIdentity,
        settings: Settings,
        kinds: Sequence[KindPolicy],
        *,
        limiter: RateLimiter,
        ledger: SlotLedger,
        lanes: Lanes,
        wakeup: Wakeup,
        stopping: asyncio.Event,
        lease_left_s: Callable[[], float],
        settled: Callable[[], bool],
        on_turn: Callable[[], None],
        breaker: Breaker | None = None,
        proof: LeaseProof | None = None,
    ) -> None:
        """`settled()` is true when no outcome waits to be recorded; `on_turn` is called
        after every claim (the periodic summary); `proof` checks a claim that was under way
        while the lease lapsed."""
        self._pool = pool
        self._identity = identity
        self._settings = settings
        self._kinds = list(kinds)
        self._kind_names = [k.name for k in kinds]
        self._limiter = limiter
        self._ledger = ledger
        self._lanes = lanes
        self._wakeup = wakeup
        self._stopping = stopping
        self._lease_left_s = lease_left_s
        self._settled = settled
        self._on_turn = on_turn
        self._breaker = breaker
        self._proof = proof
        self._turn = 0
        # Without a rate limit, claim ahead of the free send slots (see the module doc).
        ahead = 0 if limiter.active else min(settings.concurrency, PREFETCH_MAX)
        self._capacity = settings.concurrency + ahead
        self._backoff = Backoff(logger, "claiming failed; retrying", "claim_failed")
        self._starts = ClaimStarts()
        # The last turn claimed from the starts (its "nothing due" does not cover what is
        # behind them).
        self._from_starts = False

    async def run(self, until_empty: bool) -> None:
        """Claim until the worker stops; with `until_empty`, also return once nothing is due
        or in flight."""
        settings = self._settings
        unsure = False  # a claim failed: it may have committed without us learning of it
        while not self._stopping.is_set():
            self._wakeup.clear()
            lease_ok = self._lease_left_s() > settings.lease_s / 2
            try:
                if unsure:
                    await self._release_orphans()
                    unsure = False
                claimed, asked, due_in = await self._claim(lease_ok)
                self._backoff.succeeded()
            except Exception as exc:
                # The worker outlives any one failure (see mailq.worker.backoff).
                unsure = True
                self._starts.rewind()
                self._wakeup.news = True
                await self._backoff.pause(exc, sleep=self._wakeup.sleep)
                continue
            self._on_turn()
            if asked > 0 and claimed == asked:
                continue  # more may be due right now
            if until_empty and self._from_starts:
                self._starts.rewind()  # "nothing due" must cover what is behind the starts
                self._wakeup.news = True
                continue
            if until_empty and self._drained(due_in, asked):
                return
            timeout = min(settings.poll_interval_s, self._starts.rescan_in())
            if due_in is not None:
                timeout = min(timeout, max(due_in, 0.0))
            if not lease_ok:
                timeout = min(timeout, settings.heartbeat_interval_s)
            await self._wakeup.sleep(timeout)

    def _worth_claiming(self, room: int, news: bool) -> bool:
        """Claim now, or wait for more slots to come free (the buffer still feeds the
        lanes)? Now when woken for news, when the lanes could run short, or when a claim
        would be at least half a full one."""
        ledger = self._ledger
        waiting = len(ledger) - ledger.sending
        concurrency = self._settings.concurrency
        half = min(CLAIM_BATCH_MAX, self._capacity) // 2
        return news or waiting < min(concurrency, half) or room >= half

    async def _claim(self, lease_ok: bool) -> tuple[int, int, float | None]:
        """One claim: how many were claimed, how many that claim counts as full at, and the
        seconds until the next due email (None: unknown, or none waits)."""
        plan = plan_claim(self._capacity, self._ledger.by_kind, self._kinds, self._turn)
        self._turn += 1
        self._from_starts = False
        total = min(plan.total, CLAIM_BATCH_MAX)
        if total <= 0 or not lease_ok:
            return 0, total, None
        if not self._worth_claiming(plan.total, self._wakeup.news):
            return 0, 0, None
        self._wakeup.news = False
        breaker = self._breaker
        if breaker is not None and breaker.open:
            self._starts.rewind()  # its deferred emails wait behind the starts
            if not await breaker.probe_if_due(self._pool):
                return 0, total, breaker.wait_s()
        starts = self._starts.for_claim(plan.kinds)
        self._from_starts = starts is not None
        limits = [min(n, total) for n in plan.limits]
        asked = total
        due_in: float | None = None
        if self._limiter.active:
            limits, due_in = await self._take_tokens(plan.kinds, limits, starts)
            total = min(total, sum(limits))
        throttled = due_in is not None
        plan = ClaimPlan(plan.kinds, limits, total)
        backend = breaker.backend if breaker is not None else None
        lapses = self._proof.lapses() if self._proof is not None else 0
        claimed = await email_claim_due(
            self._pool, plan, self._identity.id, backend=backend, starts=starts
        )
        # The next due time is looked for from where this claim began.
        before = self._starts.of(self._kind_names) if starts is not None else None
        self._starts.learn(claimed, rescan=starts is None)
        await self._start(claimed, lapses)
        if self._limiter.active:
            got = Counter(e.kind for e in claimed)
            unused = {k: n - got[k] for k, n in zip(plan.kinds, limits, strict=True)}
            await self._limiter.refund(self._pool, unused)
        if not throttled and (len(claimed) < total or total == 0):
            due_in = await email_next_due(self._pool, self._kind_names, before)
            overdue = due_in is not None and due_in <= 0 and len(claimed) < total
            if overdue and breaker is not None and await breaker.refresh(self._pool):
                due_in = breaker.wait_s()  # another worker opened it: wait for its probe
        # Full when it used all its tokens (throttled), else all it asked.
        return len(claimed), total if throttled else asked, due_in

    async def _start(self, claimed: list[ClaimedEmail], lapses: int) -> None:
        """Into the ledger, and to the lanes once checked if the lease lapsed meanwhile."""
        if not claimed:
            return
        slots = self._ledger.take(claimed)
        if self._proof is not None:
            await self._proof.admit(self._pool, claimed, lapses)
        self._lanes.submit(slots)

    async def _take_tokens(
        self, kinds: list[str], limits: list[int], starts: ScanStarts | None
    ) -> tuple[list[int], float | None]:
        """Under a rate limit: tokens (shared with every worker) for the emails of each kind
        that are due now (after the claim's starts); the emails each kind may claim, and the
        wait when tokens ran short."""
        due = await email_count_due(self._pool, kinds, limits, starts)
        wants = [(k, min(n, due.get(k, 0))) for k, n in zip(kinds, limits, strict=True)]
        if not any(n for _k, n in wants):
            return [0] * len(kinds), None
        grant = await self._limiter.acquire(self._pool, wants)
        return [grant.allowed[k] for k in kinds], grant.wait_s

    async def _release_orphans(self) -> None:
        """After a failed claim: hand back what this worker holds without knowing it (the
        claim committed, its reply was lost)."""
        orphans = await email_release_orphans(
            self._pool, self._identity.id, self._ledger.held_ids()
        )
        if orphans:
            logger.info(
                "handed back %d emails claimed while the connection was lost",
                len(orphans),
                extra={"action": "orphans_released", "count": len(orphans)},
            )

    def _drained(self, due_in: float | None, asked: int) -> bool:
        nothing_due = asked > 0 and (due_in is None or due_in > 0)
        paused = self._breaker is not None and self._breaker.open
        return nothing_due and not paused and not self._ledger and self._settled()
