"""The worker's proof that it still holds what it is about to send.

A worker sends an email only while it can prove, by its own clock, that its lease holds:
the lease runs until the start of its last successful renewal plus the lease length (the
database's expiry is later still, and the rescue waits a grace after that). Before each SMTP
DATA (and before each ESP request, and before a send starts) a lane asks `prove`:
- the lease is proven: go on;
- it is not (the heartbeat could not renew it: the database is unreachable, or the worker
  was frozen past it): wait, up to PROOF_WAIT_S, for the heartbeat to renew it;
- the lease had lapsed: when the heartbeat registers again, it asks the database which
  claims the worker's attempts still hold (`check_claims`) before the lease counts as proven
  again; the others were taken back, their slots are revoked and never sent by this worker.
A claim whose reply was under way while the lease lapsed (the worker frozen between the
claim's commit and its reply) brings emails the check did not see: the claimer has them
checked too (`admit`) before any of them goes to a lane.
A lane that cannot prove the lease hands its email back unsent (NotSent: outcome `released`).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Protocol

import asyncpg

from mailq.db.connection import DATABASE_ERRORS, Executor
from mailq.db.emails import email_still_held
from mailq.errors import NotSent
from mailq.models import ClaimedEmail
from mailq.worker.slots import AttemptKey, SlotLedger

logger = logging.getLogger(__name__)

# How long a lane waits for the heartbeat to prove the lease again before it gives the email
# back unsent (an SMTP server waits minutes for DATA: RFC 5321 §4.5.3.2).
PROOF_WAIT_S = 30.0


class Renewing(Protocol):
    def lease_left_s(self) -> float: ...

    async def wait_renewed(self, timeout: float) -> bool: ...


class LeaseProof:
    def __init__(
        self, ledger: SlotLedger, worker_id: uuid.UUID, *, wait_s: float = PROOF_WAIT_S
    ) -> None:
        self._ledger = ledger
        self._worker_id = worker_id
        self._wait_s = wait_s
        self._heartbeat: Renewing | None = None
        self._lapses = 0

    def watch(self, heartbeat: Renewing) -> None:
        self._heartbeat = heartbeat

    async def prove(self, email: ClaimedEmail) -> None:
        """Return when the worker may send this attempt now; NotSent when it may not."""
        heartbeat = self._heartbeat
        if self._ledger.revoked(email):
            raise NotSent("taken back by another worker after this worker's lease lapsed")
        if heartbeat is None or heartbeat.lease_left_s() > 0:
            return
        loop = asyncio.get_running_loop()
        ends = loop.time() + self._wait_s
        while heartbeat.lease_left_s() <= 0 and loop.time() < ends:
            await heartbeat.wait_renewed(ends - loop.time())
        if self._ledger.revoked(email):
            raise NotSent("taken back by another worker after this worker's lease lapsed")
        if heartbeat.lease_left_s() <= 0:
            raise NotSent(
                f"the worker could not prove its lease for {self._wait_s:.0f}s (the database "
                "unreachable, or the worker stalled): handed back unsent"
            )

    def lapses(self) -> int:
        """How many times the lease was found lapsed (and the claims held then checked)."""
        return self._lapses

    async def check_claims(self, conn: asyncpg.Connection) -> None:
        """The lease had lapsed and is registered again: revoke the claims the database says
        the worker's attempts no longer hold (before the lease counts as proven again)."""
        # Counted before the ledger is read (no await between): a claim that reaches the
        # ledger after this read sees the count moved and is checked by `admit`.
        self._lapses += 1
        emails = self._ledger.emails()
        if not emails:
            return
        held = await email_still_held(conn, self._worker_id, emails)
        self._revoke_unheld(emails, held)

    async def admit(self, db: Executor, emails: list[ClaimedEmail], lapses: int) -> None:
        """Emails just claimed (already in the ledger) by a claim that began when `lapses()`
        was `lapses`: if the lease lapsed since, the check of the claims held may have run
        before they reached the ledger, and they may have been taken back meanwhile; those
        the database says the worker no longer holds are revoked now, before any is sent.
        When the database cannot say, all of them are: a revoked email is handed back, never
        sent by this worker, and a hand-back of what it no longer holds is refused."""
        if lapses == self._lapses or not emails:
            return
        try:
            held = await email_still_held(db, self._worker_id, emails)
        except DATABASE_ERRORS:
            held = set()
        self._revoke_unheld(emails, held)

    def _revoke_unheld(self, emails: list[ClaimedEmail], held: set[AttemptKey]) -> None:
        revoked = self._ledger.revoke_unheld(emails, held)
        logger.warning(
            "lease lapsed and registered again: %d of %d claims still held%s",
            len(held),
            len(emails),
            f"; {revoked} taken back by other workers will not be sent by this one"
            if revoked
            else "",
            extra={
                "action": "lease_lapsed",
                "worker_id": str(self._worker_id),
                "held": len(held),
                "revoked": revoked,
            },
        )
