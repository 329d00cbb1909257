"""One attempt at an email (or a batch of them, for backends that take batches): build the
message, prove the lease, send, and turn the answer into an outcome."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

import asyncpg

from mailq.bounces.verp import Verp
from mailq.compose.dkim import DkimSigner
from mailq.compose.message import OutgoingMessage, build_message
from mailq.compose.templates import needs_sandbox, render_executor
from mailq.compose.unsubscribe import UnsubscribeLinks
from mailq.db.connection import DATABASE_ERRORS
from mailq.db.emails import email_mark_data_started
from mailq.db.leases import WorkerIdentity
from mailq.deadlines import EXPIRED, after_failure, is_expired
from mailq.delivery.breaker import Breaker
from mailq.delivery.sender import BeforeData, Sender, SendReceipt
from mailq.errors import NotSent, RetryLater, SendFailure
from mailq.kinds import LOST_HOLD, KindPolicy, policy_for
from mailq.models import AttemptResult, ClaimedEmail, Outcome
from mailq.retry import RetryPolicy
from mailq.worker.lease import LeaseProof

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
    """One attempt at one email: build, sign, send, and the outcome.

    Before the send starts and again right before the message goes out (SMTP DATA, or the ESP
    request) the worker proves that it still holds the email (`proof`); an email past its
    expiry is not sent; while the backend's breaker is open nothing is sent; a failure of the
    backend itself is `deferred` and trips the breaker; a transient failure is retried until
    the email's deadline (mailq.deadlines)."""

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
        proof: LeaseProof | None = None,
        breaker: Breaker | None = None,
        verp: Verp | None = None,
    ) -> None:
        """`on_retry_after` is told of the wait a refusal asked for (a 429's Retry-After);
        `verp` (MAILQ_BOUNCE_DOMAIN, SMTP backends) makes each envelope sender name its email."""
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
        self._proof = proof
        self._breaker = breaker
        self._verp = verp

    async def attempt(self, email: ClaimedEmail, started_at: datetime) -> AttemptResult:
        policy = policy_for(email.kind, self._policies)
        if email.suppressed is not None:
            return _suppressed(email, started_at)
        if is_expired(email, policy, started_at):
            return AttemptResult(email, Outcome.EXPIRED, started_at, error=EXPIRED)
        try:
            self._check_breaker()
            await self._prove(email)
            message = await self._build_off_loop(email, policy)
            receipt = await self._sender.send(message, self._before_data(email, policy))
        except SendFailure as failure:
            return await self._failed(email, started_at, failure, policy)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            return _unexpected(email, started_at, exc)
        return _sent(email, started_at, receipt)

    async def attempt_batch(
        self, emails: Sequence[ClaimedEmail], started_at: datetime
    ) -> list[AttemptResult]:
        """One attempt at each of `emails` through one `send_batch`: each result is its own
        attempt. An email that is suppressed, cannot be built, (`hold`) cannot be marked as
        starting DATA or whose lease cannot be proven right before the request has its outcome
        without being sent; the others go in the batch."""
        results: dict[int, AttemptResult] = {}
        prepared: list[_Prepared] = []
        for email in emails:
            policy = policy_for(email.kind, self._policies)
            if email.suppressed is not None:
                results[email.id] = _suppressed(email, started_at)
                continue
            if is_expired(email, policy, started_at):
                results[email.id] = AttemptResult(email, Outcome.EXPIRED, started_at, error=EXPIRED)
                continue
            try:
                self._check_breaker()
                await self._prove(email)
                message = await self._build_off_loop(email, policy)
                prepared.append(_Prepared(email, policy, message))
            except SendFailure as failure:
                results[email.id] = await self._failed(email, started_at, failure, policy)
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
                    results[p.email.id] = await self._failed(p.email, started_at, mark, p.policy)
                elif isinstance(mark, BaseException):
                    raise mark
            prepared = [p for p in prepared if p.email.id not in results]
        prepared = await self._still_held(prepared, started_at, results)
        if prepared:
            await self._send_batch(prepared, started_at, results)
        return [results[e.id] for e in emails]

    async def _still_held(
        self, prepared: list[_Prepared], started_at: datetime, results: dict[int, AttemptResult]
    ) -> list[_Prepared]:
        """Right before the request (as before SMTP DATA): the lease of each email proven
        again; one that cannot be proven (taken back while the worker's lease had lapsed, or
        the lease not renewed in time) is handed back unsent and left out of the batch."""
        if self._proof is None or not prepared:
            return prepared
        proofs = await asyncio.gather(
            *(self._proof.prove(p.email) for p in prepared), return_exceptions=True
        )
        kept = []
        for p, proof in zip(prepared, proofs, strict=True):
            if isinstance(proof, SendFailure):
                results[p.email.id] = await self._failed(p.email, started_at, proof, p.policy)
            elif isinstance(proof, BaseException):
                raise proof
            else:
                kept.append(p)
        return kept

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
                results[p.email.id] = await self._failed(p.email, started_at, answer, p.policy)
            else:
                results[p.email.id] = _sent(p.email, started_at, answer)

    async def _build_off_loop(self, email: ClaimedEmail, policy: KindPolicy) -> OutgoingMessage:
        """Build the message; one whose templates run Jinja is built in a render thread (each
        render has a budget of its own), so the heartbeat and the other sends go on."""
        if _runs_jinja(email.content):
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(render_executor(), self._build, email, policy)
        return self._build(email, policy)

    def _build(self, email: ClaimedEmail, policy: KindPolicy) -> OutgoingMessage:
        message = build_message(
            email,
            self._redirect_all_to,
            unsubscribe=self._unsubscribe,
            list_unsubscribe=policy.list_unsubscribe,
            feedback_sender_id=self._feedback_sender_id,
        )
        if self._verp is not None:
            # MAIL FROM, which the receiving MTA records as Return-Path: bounces name the email.
            message = replace(message, mail_from=self._verp.address(email.id))
        if self._dkim is not None:
            message = self._dkim.sign(message)
        return message

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
            retry_in_s=self._retry_in_s(failure, step.retry_in_s),
            suppress=failure.suppress and failure.permanent and not self._redirect_all_to,
        )

    def _retry_in_s(self, failure: SendFailure, backoff_s: float) -> float:
        """The backoff, or the wait the provider asked for (a 429's Retry-After), which also
        slows the whole backend down (`on_retry_after`)."""
        asked = getattr(failure, "retry_after_s", None)
        if asked is not None and asked > 0:
            if self._on_retry_after is not None:
                self._on_retry_after(float(asked))
            return float(asked)
        return backoff_s

    def _check_breaker(self) -> None:
        if self._breaker is not None and self._breaker.open:
            raise NotSent(f"the backend {self._breaker.backend} is unavailable (breaker open)")

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
            await self._proof.prove(email)

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


def _runs_jinja(content: Mapping[str, Any]) -> bool:
    get = content.get  # on every send: no generator over the three parts
    return needs_sandbox(get("subject")) or needs_sandbox(get("text")) or needs_sandbox(get("html"))


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
