"""Send lanes: a fixed number of long-lived tasks that take claimed emails from one queue,
build each message, send it and hand the outcome to the recorder.

The lane count bounds the sends in flight, without a task and a semaphore per email. A lane
whose sender answers at once (null, file) works through a whole claimed batch in one go.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

import asyncpg

from mailq.compose.dkim import DkimSigner
from mailq.compose.message import build_message
from mailq.compose.unsubscribe import UnsubscribeLinks
from mailq.db.connection import DATABASE_ERRORS
from mailq.db.emails import email_mark_data_started
from mailq.db.leases import WorkerIdentity
from mailq.deadlines import EXPIRED, after_failure, is_expired
from mailq.delivery.breaker import Breaker
from mailq.delivery.sender import BeforeData, Sender
from mailq.errors import NotSent, RetryLater, SendFailure
from mailq.kinds import LOST_HOLD, KindPolicy, policy_for
from mailq.models import AttemptResult, ClaimedEmail, Outcome
from mailq.retry import RetryPolicy
from mailq.worker.lease import LeaseProof
from mailq.worker.slots import Slot

logger = logging.getLogger(__name__)

# Told of every attempt's outcome and how long the send took in seconds (metrics).
AttemptObserver = Callable[[AttemptResult, float], None]


class SendAttempts:
    """One attempt at one email: build, sign, send, and the outcome.

    Before the send starts and again right before DATA (or the ESP request) the worker proves
    that it still holds the email (`proof`); an email past its expiry is not sent; while the
    backend's breaker is open nothing is sent; a failure of the backend itself is `deferred`
    and trips the breaker; a transient failure is retried until the email's deadline
    (mailq.deadlines)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        identity: WorkerIdentity,
        sender: Sender,
        *,
        policies: Mapping[str, KindPolicy],
        retry_policy: RetryPolicy | None,
        redirect_all_to: str | None,
        unsubscribe: UnsubscribeLinks,
        dkim: DkimSigner | None,
        proof: LeaseProof | None = None,
        breaker: Breaker | None = None,
    ) -> None:
        self._pool = pool
        self._identity = identity
        self._sender = sender
        self._policies = policies
        self._retry_policy = retry_policy
        self._redirect_all_to = redirect_all_to
        self._unsubscribe = unsubscribe
        self._dkim = dkim
        self._proof = proof
        self._breaker = breaker

    async def attempt(self, email: ClaimedEmail, started_at: datetime) -> AttemptResult:
        policy = policy_for(email.kind, self._policies)
        if email.suppressed is not None:
            # Suppressed after it was queued: never sent, cancelled with the reason.
            return AttemptResult(
                email, Outcome.CANCELLED, started_at, error=f"suppressed: {email.suppressed}"
            )
        if is_expired(email, policy, started_at):
            return AttemptResult(email, Outcome.EXPIRED, started_at, error=EXPIRED)
        try:
            if self._breaker is not None and self._breaker.open:
                raise NotSent(f"the backend {self._breaker.backend} is unavailable (breaker open)")
            await self._prove(email)
            message = build_message(
                email,
                self._redirect_all_to,
                unsubscribe=self._unsubscribe,
                list_unsubscribe=policy.list_unsubscribe,
            )
            if self._dkim is not None:
                message = self._dkim.sign(message)
            receipt = await self._sender.send(message, self._before_data(email, policy))
        except SendFailure as failure:
            return await self._failed(email, started_at, failure, policy)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # One bad email fails alone; the worker goes on.
            logger.exception(
                "email %d failed with an unexpected error",
                email.id,
                extra={"action": "email_error", "email_id": email.id, "kind": email.kind},
            )
            return AttemptResult(
                email, Outcome.FAILED, started_at, error=f"{type(exc).__name__}: {exc}"
            )
        refused = "; ".join(f"{a}: {r}" for a, r in receipt.refused.items()) or None
        return AttemptResult(
            email,
            Outcome.SENT,
            started_at,
            receipt.smtp_code,
            receipt.smtp_reply,
            f"refused recipients: {refused}" if refused else None,
        )

    async def _failed(
        self, email: ClaimedEmail, started_at: datetime, failure: SendFailure, policy: KindPolicy
    ) -> AttemptResult:
        if isinstance(failure, NotSent):
            return AttemptResult(email, Outcome.RELEASED, started_at, error=failure.reason)
        step = after_failure(email, policy, failure, datetime.now(UTC), self._retry_policy)
        if step.outcome is Outcome.DEFERRED:
            await self._trip(failure.reason)
        return AttemptResult(
            email,
            step.outcome,
            started_at,
            failure.smtp_code,
            failure.smtp_reply,
            step.error,
            retry_in_s=step.retry_in_s,
            suppress=failure.suppress and failure.permanent and not self._redirect_all_to,
        )

    async def _trip(self, reason: str) -> None:
        """The backend itself failed: open its breaker (shared through the database)."""
        if self._breaker is None:
            return
        try:
            await self._breaker.trip(self._pool, reason)
        except DATABASE_ERRORS as exc:
            # Open in this worker's eyes at least; a later trip or probe tells the others.
            self._breaker.open_here()
            logger.warning("could not record that the backend failed: %s", exc)

    async def _prove(self, email: ClaimedEmail) -> None:
        if self._proof is not None:
            await self._proof.prove(email.id)

    def _before_data(self, email: ClaimedEmail, policy: KindPolicy) -> BeforeData:
        """Right before DATA (or the ESP request): the lease proven again and, for the
        `hold` policy, DATA recorded durably as begun."""
        mark = self._mark_data_started(email) if policy.lost == LOST_HOLD else None

        async def before_data() -> None:
            await self._prove(email)
            if mark is not None:
                await mark()

        return before_data

    def _mark_data_started(self, email: ClaimedEmail) -> BeforeData:
        """The `hold` policy's hook: DATA begins only once that is recorded durably, so a
        worker found dead after it leaves the email `unknown` rather than sending it twice."""

        async def mark() -> None:
            try:
                held = await email_mark_data_started(
                    self._pool, email.id, self._identity.id, email.attempt
                )
            except DATABASE_ERRORS as exc:
                raise RetryLater(f"could not record that DATA begins: {exc}") from None
            if not held:
                raise RetryLater("the attempt no longer holds the email (lease lost)")

        return mark


class Lanes:
    """The lanes and their queue of claimed emails (slots) waiting to be sent."""

    def __init__(
        self,
        count: int,
        attempts: SendAttempts,
        *,
        on_result: Callable[[AttemptResult], None],
        stopping: asyncio.Event,
        observer: AttemptObserver | None = None,
    ) -> None:
        self._count = count
        self._attempts = attempts
        self._on_result = on_result
        self._stopping = stopping
        self._observer = observer
        self._pending: deque[Slot] = deque()
        self._idle: deque[asyncio.Future[None]] = deque()
        self._waking = 0  # lanes woken that have not run yet
        self._closing = False
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._lane(), name=f"mailq-lane-{n}") for n in range(self._count)
        ]

    def submit(self, slots: list[Slot]) -> None:
        """Queue claimed emails for sending."""
        self._pending.extend(slots)
        if slots:
            self._wake_one()

    def close(self) -> None:
        """Send nothing more that has not started; each lane stops once its send is done."""
        self._pending.clear()
        self._closing = True
        while self._idle:
            waiter = self._idle.popleft()
            if not waiter.done():
                waiter.set_result(None)
                self._waking += 1

    async def finish(self, timeout: float) -> int:
        """After `close()`: wait up to `timeout` for the sends in progress; cancels the rest
        and returns how many were cancelled."""
        if not self._tasks:
            return 0
        _done, pending = await asyncio.wait(self._tasks, timeout=timeout)
        for task in pending:
            task.cancel()
        return len(pending)

    def _wake_one(self) -> None:
        """Wake one idle lane. A lane that takes an email and sees more waiting wakes the
        next before it sends: lanes join in as sends suspend, while a sender that answers
        at once leaves a whole batch to one lane (no wake-up per email)."""
        if self._waking:
            return  # one is on its way; it wakes the next in turn
        idle = self._idle
        while idle:
            waiter = idle.popleft()
            if not waiter.done():
                waiter.set_result(None)
                self._waking += 1
                return

    async def _lane(self) -> None:
        """Send claimed emails one after another until the worker closes."""
        loop = asyncio.get_running_loop()
        pending = self._pending
        attempt = self._attempts.attempt
        while True:
            if not pending:
                if self._closing:
                    return
                waiter = loop.create_future()
                self._idle.append(waiter)
                try:
                    await waiter
                finally:
                    if waiter.done() and not waiter.cancelled():
                        self._waking -= 1
                continue
            slot = pending.popleft()
            if pending:
                self._wake_one()
            if self._stopping.is_set():
                continue  # not started: handed back at shutdown
            slot.started = True
            began = loop.time()
            result = await attempt(slot.email, datetime.now(UTC))
            if self._observer is not None:
                self._observe(result, loop.time() - began)
            self._on_result(result)

    def _observe(self, result: AttemptResult, seconds: float) -> None:
        if self._observer is None:
            return
        try:
            self._observer(result, seconds)
        except Exception:
            logger.exception("the attempt observer failed", extra={"action": "observer_failed"})
