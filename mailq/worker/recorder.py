"""Outcome recording: writes the lanes' outcomes in batches (all that have gathered, in one
statement), suppresses the addresses that do not exist, frees the slots of what it
committed, and keeps the tally the worker logs as its periodic summary.

An outcome is applied only if the attempt still holds its email (worker id and attempt
number are checked in the SQL): a late outcome of a worker taken for dead is refused.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import asyncpg

from mailq.db.emails import email_cancel_by_address, email_finish
from mailq.db.suppressions import suppression_add
from mailq.models import AttemptResult, Outcome
from mailq.worker.backoff import Backoff
from mailq.worker.signals import Signal
from mailq.worker.slots import SlotLedger

logger = logging.getLogger(__name__)

SUMMARY_INTERVAL_S = 10.0


_COUNTED = ("sent", "retried", "failed", "cancelled", "deferred", "expired", "released")


@dataclass(slots=True)
class Tally:
    sent: Counter[str] = field(default_factory=Counter)
    retried: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    cancelled: Counter[str] = field(default_factory=Counter)
    deferred: Counter[str] = field(default_factory=Counter)
    expired: Counter[str] = field(default_factory=Counter)
    released: Counter[str] = field(default_factory=Counter)
    rejected: int = 0
    # Outcomes found already committed by an earlier try of their batch (its reply lost).
    reconciled: int = 0

    def any(self) -> bool:
        return bool(any(getattr(self, name) for name in _COUNTED) or self.rejected)

    def add(self, other: Tally) -> None:
        for name in _COUNTED:
            getattr(self, name).update(getattr(other, name))
        self.rejected += other.rejected
        self.reconciled += other.reconciled

    def by_outcome(self) -> dict[Outcome, Counter[str]]:
        return {
            Outcome.SENT: self.sent,
            Outcome.RETRY: self.retried,
            Outcome.FAILED: self.failed,
            Outcome.CANCELLED: self.cancelled,
            Outcome.DEFERRED: self.deferred,
            Outcome.EXPIRED: self.expired,
            Outcome.RELEASED: self.released,
        }


class Recorder:
    def __init__(
        self,
        pool: asyncpg.Pool,
        worker_id: uuid.UUID,
        ledger: SlotLedger,
        *,
        on_freed: Callable[[], None],
        signal: Signal[int] | None = None,
    ) -> None:
        """`on_freed` is called once the slots of a committed batch are free."""
        self._pool = pool
        self._worker_id = worker_id
        self._ledger = ledger
        self._on_freed = on_freed
        self._signal = signal if signal is not None else Signal()
        self._results: list[AttemptResult] = []
        self._ready = asyncio.Event()
        self._closing = False
        self._backoff = Backoff(logger, "recording failed; retrying", "record_failed")
        self._tally = Tally()
        self.totals = Tally()  # what the summaries logged so far
        self._last_summary = 0.0

    @property
    def settled(self) -> bool:
        """No outcome waits to be written."""
        return not self._results

    def add(self, result: AttemptResult) -> None:
        self._results.append(result)
        self._ready.set()

    def close(self) -> None:
        """Write what is left, then stop."""
        self._closing = True
        self._ready.set()

    @property
    def unwritten(self) -> int:
        return len(self._results)

    async def run(self) -> None:
        """Write outcomes as they come. Returns once closing and every outcome is written."""
        while True:
            await self._ready.wait()
            self._ready.clear()
            while self._results:
                batch = self._results
                self._results = []
                try:
                    await self._record(batch)
                    self._backoff.succeeded()
                except Exception as exc:
                    self._results = batch + self._results
                    doing = f"recording {len(batch)} outcomes failed; retrying"
                    await self._backoff.pause(exc, doing)
            if self._closing:
                return

    async def _record(self, batch: list[AttemptResult]) -> None:
        applied = await email_finish(self._pool, batch, self._worker_id)
        bounced = [r for r in batch if r.suppress and r.email.id in applied]
        if bounced:
            await self._suppress_bounced(bounced)
        tally = self._tally
        counters = tally.by_outcome()
        for result in batch:
            email = result.email
            if email.id in applied:
                counters[result.outcome][email.kind] += 1
            elif result.outcome is Outcome.RELEASED:
                pass  # not sent, and taken back meanwhile: nothing is lost
            else:
                tally.rejected += 1
                logger.warning(
                    "outcome of email %d refused: the attempt no longer holds it (taken back "
                    "after this worker's lease expired)",
                    email.id,
                    extra={"action": "outcome_refused", "email_id": email.id},
                )
        if applied.reconciled:
            tally.reconciled += len(applied.reconciled)
            logger.info(
                "%d outcomes were already recorded (a commit whose reply was lost)",
                len(applied.reconciled),
                extra={"action": "outcome_reconciled", "count": len(applied.reconciled)},
            )
        # Committed (or refused, which is as final): only now are the slots free.
        self._ledger.free_committed(r.email for r in batch)
        self._signal.emit(len(applied))
        self._on_freed()

    async def _suppress_bounced(self, results: list[AttemptResult]) -> None:
        """A permanent "no such user": the address goes on the suppression list, and its
        other emails that have not gone out are cancelled."""
        reasons = {r.email.to.lower(): f"bounced: {r.error}" for r in results}
        addresses = sorted(reasons)
        await suppression_add(self._pool, addresses, [reasons[a] for a in addresses])
        await email_cancel_by_address(self._pool, addresses, "suppressed: bounced")
        logger.info(
            "suppressed %d addresses that do not exist",
            len(addresses),
            extra={"action": "suppressed_bounced", "count": len(addresses)},
        )

    def log_summary(self, force: bool = False) -> None:
        """What was recorded since the last summary, at most every SUMMARY_INTERVAL_S."""
        now = asyncio.get_event_loop().time()
        tally = self._tally
        if not tally.any() or (not force and now - self._last_summary < SUMMARY_INTERVAL_S):
            return
        self._last_summary = now
        kinds = sorted(set(tally.sent) | set(tally.retried) | set(tally.failed))
        per_kind = ", ".join(
            f"{k}: {tally.sent[k]} sent/{tally.retried[k]} retry/{tally.failed[k]} failed"
            for k in kinds
        )
        others = [
            f"{sum(getattr(tally, name).values())} {name}"
            for name in ("deferred", "expired", "released")
            if getattr(tally, name)
        ]
        if tally.rejected:
            others.append(f"{tally.rejected} late outcomes refused")
        logger.info(
            "cycle: %s%s",
            per_kind,
            "".join(f"; {o}" for o in others),
            extra={
                "action": "cycle",
                "sent": dict(tally.sent),
                "retried": dict(tally.retried),
                "failed": dict(tally.failed),
                "deferred": dict(tally.deferred),
            },
        )
        self.totals.add(tally)
        self._tally = Tally()
