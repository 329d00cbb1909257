"""Send lanes: a fixed number of long-lived tasks that take claimed emails from one queue,
build each message, send it and hand the outcome to the recorder.

The lane count bounds the sends in flight, without a task and a semaphore per email. A lane
whose sender answers at once (null, file) works through a whole claimed batch in one go.

A sender with a batch call (`max_batch` > 1: Postmark, Resend) gets batches: a lane that takes
an email also takes the claimed emails already waiting (up to `max_batch`; never waiting for
more, so a lone email goes out through `send` at once) and sends them in one `send_batch`.
Each email's outcome is its own attempt, and each slot is freed only once that outcome is
committed, as for single sends: a batch in flight is at most the worker's concurrency.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

import asyncpg

from mailq.compose.dkim import DkimSigner
from mailq.compose.message import OutgoingMessage, build_message
from mailq.compose.unsubscribe import UnsubscribeLinks
from mailq.db.connection import DATABASE_ERRORS
from mailq.db.emails import email_mark_data_started
from mailq.db.leases import WorkerIdentity
from mailq.delivery.sender import BeforeData, Sender, SendReceipt
from mailq.errors import RetryLater, SendFailure
from mailq.kinds import LOST_HOLD, KindPolicy, policy_for
from mailq.models import AttemptResult, ClaimedEmail, Outcome
from mailq.retry import RetryPolicy
from mailq.worker.slots import Slot

logger = logging.getLogger(__name__)

# Told of every attempt's outcome and how long the send took in seconds (metrics).
AttemptObserver = Callable[[AttemptResult, float], None]

# Told of the wait a provider asked for (a 429's Retry-After), to slow every worker down.
RetryAfterHook = Callable[[float], None]


@runtime_checkable
class BatchSender(Protocol):
    """A sender with a batch call (mailq.delivery.esp): one result per message, in order."""

    max_batch: int

    async def send_batch(
        self, messages: Sequence[OutgoingMessage], before_data: BeforeData | None = None
    ) -> Sequence[SendReceipt | SendFailure]: ...


def batch_size(sender: Sender) -> int:
    """How many emails one send of this sender takes (1: no batch call)."""
    if isinstance(sender, BatchSender):
        return max(1, int(sender.max_batch))
    return 1


@dataclass(slots=True)
class _Prepared:
    email: ClaimedEmail
    policy: KindPolicy
    message: OutgoingMessage


class SendAttempts:
    """One attempt at one email: build, sign, send (with the `hold` hook), and the outcome."""

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
        feedback_sender_id: str = "mailq",
        on_retry_after: RetryAfterHook | None = None,
    ) -> None:
        """`on_retry_after` is told of the wait a refusal asked for (a 429's Retry-After)."""
        self._pool = pool
        self._identity = identity
        self._sender = sender
        self._policies = policies
        self._retry_policy = retry_policy
        self._redirect_all_to = redirect_all_to
        self._unsubscribe = unsubscribe
        self._dkim = dkim
        self._feedback_sender_id = feedback_sender_id
        self._on_retry_after = on_retry_after
        self.batch_size = batch_size(sender)

    async def attempt(self, email: ClaimedEmail, started_at: datetime) -> AttemptResult:
        policy = policy_for(email.kind, self._policies)
        if email.suppressed is not None:
            return _suppressed(email, started_at)
        try:
            message = self._build(email, policy)
            before_data = self._mark_data_started(email) if policy.lost == LOST_HOLD else None
            receipt = await self._sender.send(message, before_data)
        except SendFailure as failure:
            return self._failed(email, started_at, failure, policy)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            return _unexpected(email, started_at, exc)
        return _sent(email, started_at, receipt)

    async def attempt_batch(
        self, emails: Sequence[ClaimedEmail], started_at: datetime
    ) -> list[AttemptResult]:
        """One attempt at each of `emails` through one `send_batch`: each result is its own
        attempt. An email that is suppressed, cannot be built or (`hold`) cannot be marked
        as starting DATA has its outcome without being sent; the others go in the batch."""
        results: dict[int, AttemptResult] = {}
        prepared: list[_Prepared] = []
        for email in emails:
            policy = policy_for(email.kind, self._policies)
            if email.suppressed is not None:
                results[email.id] = _suppressed(email, started_at)
                continue
            try:
                prepared.append(_Prepared(email, policy, self._build(email, policy)))
            except SendFailure as failure:
                results[email.id] = self._failed(email, started_at, failure, policy)
            except Exception as exc:
                results[email.id] = _unexpected(email, started_at, exc)
        # `hold`: DATA of each email begins only once that is recorded (as for one send).
        held = [p for p in prepared if p.policy.lost == LOST_HOLD]
        if held:
            marks = await asyncio.gather(
                *(self._mark_data_started(p.email)() for p in held), return_exceptions=True
            )
            for p, mark in zip(held, marks, strict=True):
                if isinstance(mark, SendFailure):
                    results[p.email.id] = self._failed(p.email, started_at, mark, p.policy)
                elif isinstance(mark, BaseException):
                    raise mark
            prepared = [p for p in prepared if p.email.id not in results]
        if prepared:
            await self._send_batch(prepared, started_at, results)
        return [results[e.id] for e in emails]

    async def _send_batch(
        self, prepared: list[_Prepared], started_at: datetime, results: dict[int, AttemptResult]
    ) -> None:
        sender = self._sender
        assert isinstance(sender, BatchSender)
        try:
            answers = await sender.send_batch([p.message for p in prepared])
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            for p in prepared:
                results[p.email.id] = _unexpected(p.email, started_at, exc)
            return
        if len(answers) != len(prepared):
            raise RuntimeError(
                f"send_batch answered {len(answers)} results for {len(prepared)} messages"
            )
        for p, answer in zip(prepared, answers, strict=True):
            if isinstance(answer, SendFailure):
                results[p.email.id] = self._failed(p.email, started_at, answer, p.policy)
            else:
                results[p.email.id] = _sent(p.email, started_at, answer)

    def _build(self, email: ClaimedEmail, policy: KindPolicy) -> OutgoingMessage:
        message = build_message(
            email,
            self._redirect_all_to,
            unsubscribe=self._unsubscribe,
            list_unsubscribe=policy.list_unsubscribe,
            feedback_sender_id=self._feedback_sender_id,
        )
        if self._dkim is not None:
            message = self._dkim.sign(message)
        return message

    def _failed(
        self, email: ClaimedEmail, started_at: datetime, failure: SendFailure, policy: KindPolicy
    ) -> AttemptResult:
        if failure.permanent or email.is_last_attempt:
            return AttemptResult(
                email,
                Outcome.FAILED,
                started_at,
                failure.smtp_code,
                failure.smtp_reply,
                failure.reason,
                suppress=failure.suppress and not self._redirect_all_to,
            )
        return AttemptResult(
            email,
            Outcome.RETRY,
            started_at,
            failure.smtp_code,
            failure.smtp_reply,
            failure.reason,
            retry_in_s=self._retry_in_s(email, failure, policy),
        )

    def _retry_in_s(self, email: ClaimedEmail, failure: SendFailure, policy: KindPolicy) -> float:
        """The backoff, or the wait the provider asked for (a 429's Retry-After), which also
        slows the whole backend down (`on_retry_after`)."""
        asked = getattr(failure, "retry_after_s", None)
        if asked is not None and asked > 0:
            if self._on_retry_after is not None:
                self._on_retry_after(float(asked))
            return float(asked)
        return (self._retry_policy or policy.retry).delay_s(email.attempt)

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


def _suppressed(email: ClaimedEmail, started_at: datetime) -> AttemptResult:
    """Suppressed after it was queued: never sent, cancelled with the reason."""
    return AttemptResult(
        email, Outcome.CANCELLED, started_at, error=f"suppressed: {email.suppressed}"
    )


def _unexpected(email: ClaimedEmail, started_at: datetime, exc: Exception) -> AttemptResult:
    """One bad email fails alone; the worker goes on."""
    logger.error(
        "email %d failed with an unexpected error",
        email.id,
        exc_info=exc,
        extra={"action": "email_error", "email_id": email.id, "kind": email.kind},
    )
    return AttemptResult(email, Outcome.FAILED, started_at, error=f"{type(exc).__name__}: {exc}")


def _sent(email: ClaimedEmail, started_at: datetime, receipt: SendReceipt) -> AttemptResult:
    refused = "; ".join(f"{a}: {r}" for a, r in receipt.refused.items()) or None
    return AttemptResult(
        email,
        Outcome.SENT,
        started_at,
        receipt.smtp_code,
        receipt.smtp_reply,
        f"refused recipients: {refused}" if refused else None,
        provider_message_id=receipt.provider_message_id,
    )


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
        batch = self._attempts.batch_size
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
            if self._stopping.is_set():
                continue  # not started: handed back at shutdown
            if batch > 1 and pending:
                await self._send_batch(slot, batch)
                continue
            if pending:
                self._wake_one()
            slot.started = True
            began = loop.time()
            result = await attempt(slot.email, datetime.now(UTC))
            if self._observer is not None:
                self._observe(result, loop.time() - began)
            self._on_result(result)

    async def _send_batch(self, first: Slot, batch: int) -> None:
        """`first` and the claimed emails already waiting, up to `batch`, in one send."""
        pending = self._pending
        slots = [first]
        while pending and len(slots) < batch:
            slots.append(pending.popleft())
        if pending:
            self._wake_one()
        for slot in slots:
            slot.started = True
        loop = asyncio.get_running_loop()
        began = loop.time()
        results = await self._attempts.attempt_batch([s.email for s in slots], datetime.now(UTC))
        seconds = loop.time() - began
        for result in results:
            if self._observer is not None:
                self._observe(result, seconds)
            self._on_result(result)

    def _observe(self, result: AttemptResult, seconds: float) -> None:
        if self._observer is None:
            return
        try:
            self._observer(result, seconds)
        except Exception:
            logger.exception("the attempt observer failed", extra={"action": "observer_failed"})
