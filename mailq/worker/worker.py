"""The worker: claims due emails in batches, sends them, records outcomes in batches.

One worker process holds a pool of a few connections (claims, outcomes, duties) and one
control connection (LISTEN and the lease heartbeat). It wakes on NOTIFY, on a send slot
coming free, at the next due time, and at the latest every poll interval.

Guarantee (see README, "Guarantees"): an email is claimed by one worker at a time (SKIP
LOCKED), and its outcome is recorded only by the attempt that claimed it (worker id and
attempt number are checked). A worker frees a send slot only once the outcome of the email
in it is committed, so at any moment at most `concurrency` emails of a worker have been
handed to SMTP without their outcome committed: that is what a kill -9 can send twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import asyncpg

from mailq.compose.dkim import DkimSigner
from mailq.compose.message import build_message
from mailq.compose.unsubscribe import UnsubscribeLinks, load_secret_key
from mailq.config import DEFAULT_CONFIG, Config
from mailq.db.connection import keep_session
from mailq.db.emails import (
    email_cancel_by_address,
    email_claim_due,
    email_count_due,
    email_finish,
    email_mark_data_started,
    email_next_due,
    email_release,
    email_release_orphans,
)
from mailq.db.leases import WorkerIdentity, worker_lease_delete
from mailq.db.schema import ensure_current
from mailq.db.suppressions import suppression_add
from mailq.delivery.sender import BeforeData, Sender
from mailq.errors import DatabaseUnavailable, RetryLater, SendFailure
from mailq.kinds import LOST_HOLD, KindPolicy, plan_claim, policy_for
from mailq.models import AttemptResult, ClaimedEmail, Outcome
from mailq.retry import RetryPolicy
from mailq.settings import Settings
from mailq.worker import duties as maintenance
from mailq.worker.control import Heartbeat
from mailq.worker.ratelimit import RateLimiter, limits_of

logger = logging.getLogger(__name__)

# Most emails one claim takes; smaller than a large concurrency so claims and sends overlap.
CLAIM_BATCH_MAX = 100
DB_RETRY_MIN_S = 0.2
DB_RETRY_MAX_S = 5.0
SUMMARY_INTERVAL_S = 10.0
POOL_SIZE = 4
# What a lost or restarting database raises; the worker waits and tries again on these.
# (asyncpg raises InternalClientError from a connection cut in the middle of an operation.)
DATABASE_ERRORS = (
    OSError,
    TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
)

# Told of every attempt's outcome and how long the send took in seconds (metrics).
AttemptObserver = Callable[[AttemptResult, float], None]


@dataclass(slots=True)
class _InFlight:
    email: ClaimedEmail
    started: bool = False


@dataclass(slots=True)
class _Tally:
    sent: Counter[str] = field(default_factory=Counter)
    retried: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    cancelled: Counter[str] = field(default_factory=Counter)
    rejected: int = 0

    def any(self) -> bool:
        return bool(self.sent or self.retried or self.failed or self.cancelled or self.rejected)


class Worker:
    """Run with `await worker.run()`; `stop()` asks for a graceful stop from anywhere."""

    def __init__(
        self,
        settings: Settings,
        sender: Sender,
        *,
        kinds: Sequence[str] | None = None,
        policies: Mapping[str, KindPolicy] | None = None,
        retry_policy: RetryPolicy | None = None,
        database_url: str | None = None,
        sender_parallelism: int | None = None,
        observer: AttemptObserver | None = None,
        config: Config = DEFAULT_CONFIG,
        unsubscribe: UnsubscribeLinks | None = None,
    ) -> None:
        """`config` (MAILQ_CONFIG) gives the kinds, rate limits, DKIM key and unsubscribe
        mailbox; `policies` overrides its kinds; `retry_policy` overrides every kind's
        backoff (tests)."""
        dsn = database_url or settings.database_url
        if not dsn:
            raise ValueError("the worker needs a database URL")
        self._dsn = dsn
        self.settings = settings
        self.sender = sender
        self.config = config
        policies = policies if policies is not None else config.kinds
        self.policies = policies
        names = list(kinds) if kinds else list(policies)
        self.kinds = [policy_for(k, policies) for k in names]
        self.retry_policy = retry_policy
        self._limiter = RateLimiter(limits_of(self.kinds, config.backend_rate_limit))
        self._dkim = DkimSigner(config.dkim) if config.dkim else None
        self._unsubscribe = unsubscribe or UnsubscribeLinks(
            load_secret_key(settings), settings.public_url, config.unsubscribe_mailto
        )
        self.identity = WorkerIdentity(
            id=uuid.uuid4(),
            hostname=socket.gethostname(),
            pid=os.getpid(),
            kinds=tuple(k.name for k in self.kinds),
            concurrency=settings.concurrency,
        )
        self._in_flight: dict[int, _InFlight] = {}
        self._kind_in_flight: Counter[str] = Counter()
        # Sends run on this many long-lived lanes that take claimed emails from one queue:
        # the bound on sends in flight, without a task and a semaphore per email. A lane whose
        # sender answers at once (null, file) works through a whole claimed batch in one go.
        self._lane_count = max(1, sender_parallelism or settings.concurrency)
        self._pending: deque[_InFlight] = deque()
        self._idle_lanes: deque[asyncio.Future[None]] = deque()
        self._lanes_waking = 0  # lanes woken that have not run yet
        self._lanes_closing = False
        self._lanes: list[asyncio.Task[None]] = []
        self._results: list[AttemptResult] = []
        self._results_ready = asyncio.Event()
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._stopped = asyncio.Event()
        self._closing = False
        self._running = False
        self._pool: asyncpg.Pool | None = None
        self._heartbeat: Heartbeat | None = None
        self._tally = _Tally()
        self.totals = _Tally()
        self._turn = 0
        self._observer = observer

    # -- lifecycle -------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop claiming, finish what is in flight (within the grace period), hand back the
        rest. Safe to call before `run`, twice, or from a signal handler."""
        self._stopping.set()
        self._wake.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    async def run(self, *, until_empty: bool = False) -> None:
        """Work until `stop()`; with `until_empty`, also return once nothing is due or in
        flight (tests and one-shot drains)."""
        if self._running:
            raise RuntimeError("this worker is already running")
        if self._stopping.is_set():
            return
        try:
            pool = await asyncpg.create_pool(
                self._dsn,
                min_size=1,
                max_size=POOL_SIZE,
                command_timeout=60,
                reset=keep_session,
            )
        except DATABASE_ERRORS as exc:
            raise DatabaseUnavailable(f"cannot reach the queue's database: {exc}") from exc
        assert pool is not None
        self._running = True
        self._pool = pool
        try:
            await ensure_current(pool)
            await self._limiter.configure(pool)
            self._heartbeat = Heartbeat(
                self._dsn,
                self.identity,
                lease_s=self.settings.lease_s,
                interval_s=self.settings.heartbeat_interval_s,
                on_due_in=self._on_due_in,
                on_connected=self._wake.set,
            )
            control = asyncio.create_task(self._heartbeat.run(), name="mailq-heartbeat")
            recorder = asyncio.create_task(self._record_loop(), name="mailq-recorder")
            self._lanes = [
                asyncio.create_task(self._lane(), name=f"mailq-lane-{n}")
                for n in range(self._lane_count)
            ]
            duties = asyncio.create_task(self._duty_loop(), name="mailq-duties")
            try:
                await self._wait_registered(control)
                logger.info(
                    "worker started",
                    extra={
                        "action": "worker_started",
                        "worker_id": str(self.identity.id),
                        "kinds": list(self.identity.kinds),
                        "concurrency": self.settings.concurrency,
                    },
                )
                await self._claim_loop(until_empty)
            finally:
                await self._shutdown(recorder)
                duties.cancel()
                self._heartbeat.stop()
                await asyncio.gather(duties, control, return_exceptions=True)
                await self._forget_lease()
        finally:
            self._log_summary(force=True)
            await pool.close()
            await self.sender.close()
            self._stopped.set()
            self._running = False

    async def _wait_registered(self, control: asyncio.Task[None]) -> None:
        assert self._heartbeat is not None
        registered = asyncio.ensure_future(self._heartbeat.registered.wait())
        stopping = asyncio.ensure_future(self._stopping.wait())
        await asyncio.wait({registered, stopping, control}, return_when=asyncio.FIRST_COMPLETED)
        registered.cancel()
        stopping.cancel()

    async def _forget_lease(self) -> None:
        assert self._pool is not None
        try:
            await worker_lease_delete(self._pool, self.identity.id)
        except DATABASE_ERRORS as exc:
            logger.warning("could not remove the worker's lease: %s", exc)

    # -- claiming --------------------------------------------------------------------------

    def _on_due_in(self, due_in: float) -> None:
        if due_in <= 0:
            self._wake.set()
        else:
            asyncio.get_running_loop().call_later(due_in, self._wake.set)

    async def _claim_loop(self, until_empty: bool) -> None:
        assert self._pool is not None and self._heartbeat is not None
        backoff = DB_RETRY_MIN_S
        unsure = False  # a claim failed: it may have committed without us learning of it
        while not self._stopping.is_set():
            self._wake.clear()
            plan = plan_claim(
                self.settings.concurrency, self._kind_in_flight, self.kinds, self._turn
            )
            self._turn += 1
            total = min(plan.total, CLAIM_BATCH_MAX)
            lease_ok = self._heartbeat.lease_left_s() > self.settings.lease_s / 2
            claimed: list[ClaimedEmail] = []
            due_in: float | None = None
            try:
                if unsure:
                    await self._release_orphans()
                    unsure = False
                if total > 0 and lease_ok:
                    limits = [min(n, total) for n in plan.limits]
                    asked = total
                    throttled = False
                    if self._limiter.active:
                        limits, due_in = await self._take_tokens(plan.kinds, limits)
                        throttled = due_in is not None
                        total = min(total, sum(limits))
                    plan = type(plan)(plan.kinds, limits, total)
                    claimed = await email_claim_due(self._pool, plan, self.identity.id)
                    self._start(claimed)
                    if self._limiter.active:
                        got = Counter(e.kind for e in claimed)
                        unused = {k: n - got[k] for k, n in zip(plan.kinds, limits, strict=True)}
                        await self._limiter.refund(self._pool, unused)
                    if not throttled and (len(claimed) < total or total == 0):
                        due_in = await email_next_due(self._pool, [k.name for k in self.kinds])
                    # Full when it used all its tokens (throttled), else all it asked.
                    total = total if throttled else asked
                backoff = DB_RETRY_MIN_S
            except Exception as exc:
                # The worker outlives any one failure; a database error is expected (restart,
                # lost connection), anything else is a bug worth a traceback.
                expected = isinstance(exc, DATABASE_ERRORS)
                logger.log(
                    logging.WARNING if expected else logging.ERROR,
                    "claiming failed; retrying in %.1fs: %s",
                    backoff,
                    exc,
                    exc_info=not expected,
                    extra={"action": "claim_failed"},
                )
                unsure = True
                await self._sleep(backoff)
                backoff = min(DB_RETRY_MAX_S, backoff * 2)
                continue
            self._log_summary()
            if total > 0 and len(claimed) == total:
                continue  # more may be due right now
            if until_empty and self._drained(due_in, total):
                return
            timeout = self.settings.poll_interval_s
            if due_in is not None:
                timeout = min(timeout, max(due_in, 0.0))
            if not lease_ok:
                timeout = min(timeout, self.settings.heartbeat_interval_s)
            await self._sleep(timeout)

    async def _release_orphans(self) -> None:
        assert self._pool is not None
        orphans = await email_release_orphans(self._pool, self.identity.id, list(self._in_flight))
        if orphans:
            logger.info(
                "handed back %d emails claimed while the connection was lost",
                len(orphans),
                extra={"action": "orphans_released", "count": len(orphans)},
            )

    async def _take_tokens(
        self, kinds: list[str], limits: list[int]
    ) -> tuple[list[int], float | None]:
        """Under a rate limit: tokens (shared with every worker) for the emails of each kind
        that are due now; the emails each kind may claim, and the wait when tokens ran short."""
        assert self._pool is not None
        due = await email_count_due(self._pool, kinds, limits)
        wants = [(k, min(n, due.get(k, 0))) for k, n in zip(kinds, limits, strict=True)]
        if not any(n for _k, n in wants):
            return [0] * len(kinds), None
        grant = await self._limiter.acquire(self._pool, wants)
        return [grant.allowed[k] for k in kinds], grant.wait_s

    def _drained(self, due_in: float | None, asked: int) -> bool:
        nothing_due = asked > 0 and (due_in is None or due_in > 0)
        return nothing_due and not self._in_flight and not self._results

    async def _sleep(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)

    # -- sending ---------------------------------------------------------------------------

    def _start(self, claimed: list[ClaimedEmail]) -> None:
        in_flight = self._in_flight
        pending = self._pending
        for email in claimed:
            entry = _InFlight(email)
            in_flight[email.id] = entry
            pending.append(entry)
        self._kind_in_flight.update(e.kind for e in claimed)
        if claimed:
            self._wake_lane()

    def _wake_lane(self) -> None:
        """Wake one idle lane. A lane that takes an email and sees more waiting wakes the
        next before it sends: lanes join in as sends suspend, while a sender that answers
        at once leaves a whole batch to one lane (no wake-up per email)."""
        if self._lanes_waking:
            return  # one is on its way; it wakes the next in turn
        idle = self._idle_lanes
        while idle:
            waiter = idle.popleft()
            if not waiter.done():
                waiter.set_result(None)
                self._lanes_waking += 1
                return

    async def _lane(self) -> None:
        """Send claimed emails one after another until the worker closes."""
        loop = asyncio.get_running_loop()
        pending = self._pending
        while True:
            if not pending:
                if self._lanes_closing:
                    return
                waiter = loop.create_future()
                self._idle_lanes.append(waiter)
                try:
                    await waiter
                finally:
                    if waiter.done() and not waiter.cancelled():
                        self._lanes_waking -= 1
                continue
            entry = pending.popleft()
            if pending:
                self._wake_lane()
            if self._stopping.is_set():
                continue  # not started: handed back at shutdown
            entry.started = True
            email = entry.email
            began = loop.time()
            result = await self._send_one(email, datetime.now(UTC))
            if self._observer is not None:
                self._observe(result, loop.time() - began)
            self._results.append(result)
            self._results_ready.set()

    async def _send_one(self, email: ClaimedEmail, started_at: datetime) -> AttemptResult:
        policy = policy_for(email.kind, self.policies)
        if email.suppressed is not None:
            # Suppressed after it was queued: never sent, cancelled with the reason.
            return AttemptResult(
                email, Outcome.CANCELLED, started_at, error=f"suppressed: {email.suppressed}"
            )
        try:
            message = build_message(
                email,
                self.settings.redirect_all_to,
                unsubscribe=self._unsubscribe,
                list_unsubscribe=policy.list_unsubscribe,
                feedback_sender_id=self.config.feedback_sender_id,
            )
            if self._dkim is not None:
                message = self._dkim.sign(message)
            before_data = self._mark_data_started(email) if policy.lost == LOST_HOLD else None
            receipt = await self.sender.send(message, before_data)
        except SendFailure as failure:
            if failure.permanent or email.is_last_attempt:
                return AttemptResult(
                    email,
                    Outcome.FAILED,
                    started_at,
                    failure.smtp_code,
                    failure.smtp_reply,
                    failure.reason,
                    suppress=failure.suppress and not self.settings.redirect_all_to,
                )
            return AttemptResult(
                email,
                Outcome.RETRY,
                started_at,
                failure.smtp_code,
                failure.smtp_reply,
                failure.reason,
                retry_in_s=(self.retry_policy or policy.retry).delay_s(email.attempt),
            )
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

    def _observe(self, result: AttemptResult, seconds: float) -> None:
        if self._observer is None:
            return
        try:
            self._observer(result, seconds)
        except Exception:
            logger.exception("the attempt observer failed", extra={"action": "observer_failed"})

    def _mark_data_started(self, email: ClaimedEmail) -> BeforeData:
        """The `hold` policy's hook: DATA begins only once that is recorded durably, so a
        worker found dead after it leaves the email `unknown` rather than sending it twice."""

        async def mark() -> None:
            assert self._pool is not None
            try:
                held = await email_mark_data_started(
                    self._pool, email.id, self.identity.id, email.attempt
                )
            except DATABASE_ERRORS as exc:
                raise RetryLater(f"could not record that DATA begins: {exc}") from None
            if not held:
                raise RetryLater("the attempt no longer holds the email (lease lost)")

        return mark

    # -- recording outcomes ----------------------------------------------------------------

    async def _record_loop(self) -> None:
        """Write outcomes as they come, all that have gathered in one statement. Returns once
        the worker is closing and every outcome is written."""
        backoff = DB_RETRY_MIN_S
        while True:
            await self._results_ready.wait()
            self._results_ready.clear()
            while self._results:
                batch = self._results
                self._results = []
                try:
                    await self._record(batch)
                    backoff = DB_RETRY_MIN_S
                except Exception as exc:
                    self._results = batch + self._results
                    expected = isinstance(exc, DATABASE_ERRORS)
                    logger.log(
                        logging.WARNING if expected else logging.ERROR,
                        "recording %d outcomes failed; retrying in %.1fs: %s",
                        len(batch),
                        backoff,
                        exc,
                        exc_info=not expected,
                        extra={"action": "record_failed"},
                    )
                    await asyncio.sleep(backoff)
                    backoff = min(DB_RETRY_MAX_S, backoff * 2)
            if self._closing:
                return

    async def _record(self, batch: list[AttemptResult]) -> None:
        assert self._pool is not None
        applied = await email_finish(self._pool, batch, self.identity.id)
        bounced = [r for r in batch if r.suppress and r.email.id in applied]
        if bounced:
            await self._suppress_bounced(bounced)
        tallies = {
            Outcome.SENT: self._tally.sent,
            Outcome.RETRY: self._tally.retried,
            Outcome.FAILED: self._tally.failed,
            Outcome.CANCELLED: self._tally.cancelled,
        }
        for result in batch:
            email = result.email
            if email.id in applied:
                tallies[result.outcome][email.kind] += 1
            else:
                self._tally.rejected += 1
                logger.warning(
                    "outcome of email %d refused: the attempt no longer holds it (lease lost)",
                    email.id,
                    extra={"action": "outcome_refused", "email_id": email.id},
                )
            self._release_slot(email)
        self._wake.set()

    async def _suppress_bounced(self, results: list[AttemptResult]) -> None:
        """A permanent "no such user": the address goes on the suppression list, and its
        other emails that have not gone out are cancelled."""
        assert self._pool is not None
        reasons = {r.email.to.lower(): f"bounced: {r.error}" for r in results}
        addresses = sorted(reasons)
        await suppression_add(self._pool, addresses, [reasons[a] for a in addresses])
        await email_cancel_by_address(self._pool, addresses, "suppressed: bounced")
        logger.info(
            "suppressed %d addresses that do not exist",
            len(addresses),
            extra={"action": "suppressed_bounced", "count": len(addresses)},
        )

    def _release_slot(self, email: ClaimedEmail) -> None:
        if self._in_flight.pop(email.id, None) is not None:
            self._kind_in_flight[email.kind] -= 1
            if self._kind_in_flight[email.kind] <= 0:
                del self._kind_in_flight[email.kind]

    # -- shutdown --------------------------------------------------------------------------

    async def _shutdown(self, recorder: asyncio.Task[None]) -> None:
        """Hand back unstarted claims, let started sends finish within the grace period,
        record every outcome, then stop recording."""
        self._stopping.set()
        self._pending.clear()
        unstarted = [e.email for e in self._in_flight.values() if not e.started]
        # Each lane stops once its send (if any) is done.
        self._lanes_closing = True
        while self._idle_lanes:
            waiter = self._idle_lanes.popleft()
            if not waiter.done():
                waiter.set_result(None)
                self._lanes_waking += 1
        if unstarted:
            await self._hand_back(unstarted)
        if self._lanes:
            _done, pending = await asyncio.wait(self._lanes, timeout=self.settings.shutdown_grace_s)
            for task in pending:
                task.cancel()
            if pending:
                logger.warning(
                    "%d sends did not finish within the grace period; their emails will be "
                    "taken back by another worker",
                    len(pending),
                    extra={"action": "grace_expired", "count": len(pending)},
                )
        self._closing = True
        self._results_ready.set()
        try:
            await asyncio.wait_for(recorder, timeout=max(self.settings.shutdown_grace_s, 5.0))
        except TimeoutError:
            logger.warning(
                "%d outcomes could not be written before exit; those emails will be taken back",
                len(self._results),
                extra={"action": "outcomes_unwritten", "count": len(self._results)},
            )

    async def _hand_back(self, emails: list[ClaimedEmail]) -> None:
        assert self._pool is not None
        try:
            released = await email_release(self._pool, emails, self.identity.id)
        except DATABASE_ERRORS as exc:
            logger.warning("could not hand back %d emails: %s", len(emails), exc)
            return
        for email in emails:
            self._release_slot(email)
        logger.info(
            "handed back %d claimed emails that had not started",
            len(released),
            extra={"action": "handed_back", "count": len(released)},
        )

    # -- duties and logging ----------------------------------------------------------------

    async def _duty_loop(self) -> None:
        assert self._pool is not None
        rescue_every = min(self.settings.lease_s / 5, 5.0)
        loop = asyncio.get_running_loop()
        next_prune = loop.time()
        while True:
            try:
                await maintenance.rescue_expired(self._pool)
                if loop.time() >= next_prune:
                    next_prune = loop.time() + maintenance.PRUNE_INTERVAL_S
                    await maintenance.prune_finished(
                        self._pool, timedelta(days=self.settings.retention_days)
                    )
            except Exception as exc:
                expected = isinstance(exc, DATABASE_ERRORS)
                logger.log(
                    logging.WARNING if expected else logging.ERROR,
                    "maintenance failed: %s",
                    exc,
                    exc_info=not expected,
                    extra={"action": "duty_failed"},
                )
            await asyncio.sleep(rescue_every)

    _last_summary: float = 0.0

    def _log_summary(self, force: bool = False) -> None:
        now = asyncio.get_event_loop().time()
        if not self._tally.any() or (not force and now - self._last_summary < SUMMARY_INTERVAL_S):
            return
        self._last_summary = now
        tally = self._tally
        kinds = sorted(set(tally.sent) | set(tally.retried) | set(tally.failed))
        per_kind = ", ".join(
            f"{k}: {tally.sent[k]} sent/{tally.retried[k]} retry/{tally.failed[k]} failed"
            for k in kinds
        )
        logger.info(
            "cycle: %s%s",
            per_kind,
            f"; {tally.rejected} late outcomes refused" if tally.rejected else "",
            extra={
                "action": "cycle",
                "sent": dict(tally.sent),
                "retried": dict(tally.retried),
                "failed": dict(tally.failed),
            },
        )
        for name in ("sent", "retried", "failed", "cancelled"):
            getattr(self.totals, name).update(getattr(tally, name))
        self.totals.rejected += tally.rejected
        self._tally = _Tally()
