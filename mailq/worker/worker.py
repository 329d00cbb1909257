"""The worker: claims due emails in batches, sends them, records outcomes in batches.

One worker process holds a pool of a few connections (claims, outcomes, duties) and one
control connection (LISTEN and the lease heartbeat). It wakes on NOTIFY, on a send slot
coming free, at the next due time, and at the latest every poll interval.

`Worker` is the wiring; each loop is an object of its own, owning its state:
`claimer.Claimer` (the claim loop), `lanes.Lanes` (sends), `recorder.Recorder` (outcomes),
`control.Heartbeat` (LISTEN, lease), `duties.DutyRunner` (rescue, forget, prune), and
`slots.SlotLedger`, the in-flight ledger they share.

Guarantee (see README, "Guarantees"): an email is claimed by one worker at a time (SKIP
LOCKED), and its outcome is recorded only by the attempt that claimed it (worker id and
attempt number are checked). A worker frees a send slot only once the outcome of the email
in it is committed, so at any moment at most `concurrency` emails of a worker have been
handed to SMTP without their outcome committed: that is what a kill -9 can send twice.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Mapping, Sequence
from datetime import timedelta

import asyncpg

from mailq.bounces.verp import Verp
from mailq.compose.dkim import DkimSigner
from mailq.compose.unsubscribe import UnsubscribeLinks, load_secret_key
from mailq.config import DEFAULT_CONFIG, Config
from mailq.db.connection import DATABASE_ERRORS, keep_session, open_pool
from mailq.db.emails import email_release
from mailq.db.leases import WorkerIdentity, worker_lease_delete
from mailq.db.schema import ensure_current
from mailq.delivery.breaker import Breaker
from mailq.delivery.sender import Sender
from mailq.kinds import WELCOME, KindPolicy, policy_for, welcome_reserve
from mailq.models import ClaimedEmail
from mailq.retry import RetryPolicy
from mailq.settings import Settings
from mailq.worker.attempts import AttemptObserver, SendAttempts
from mailq.worker.backend_hold import BackendHold
from mailq.worker.claimer import Claimer, Wakeup
from mailq.worker.control import Heartbeat
from mailq.worker.duties import Duty, DutyRunner, ForgetDeadWorkers, PruneFinished, RescueExpired
from mailq.worker.lanes import Lanes
from mailq.worker.lease import LeaseProof
from mailq.worker.ratelimit import RateLimiter, limits_of
from mailq.worker.recorder import Recorder, Tally
from mailq.worker.signals import WorkerSignals
from mailq.worker.slots import SlotLedger

__all__ = ["AttemptObserver", "Worker"]

logger = logging.getLogger(__name__)

POOL_SIZE = 4
# A probe of the backend may take its connect timeout and this much more (EHLO, AUTH).
PROBE_TIMEOUT_MARGIN_S = 5.0


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
        signals: WorkerSignals | None = None,
    ) -> None:
        """`config` (MAILQ_CONFIG) gives the kinds, rate limits, DKIM key and unsubscribe
        mailbox; `policies` overrides its kinds; `retry_policy` overrides every kind's
        backoff (tests); `signals` lets a test await the worker's milestones."""
        dsn = database_url or settings.database_url
        if not dsn:
            raise ValueError("the worker needs a database URL")
        self._dsn = dsn
        self.settings = settings
        self.sender = sender
        self.config = config
        self.policies = policies if policies is not None else config.kinds
        names = list(kinds) if kinds else list(self.policies)
        self.kinds = [policy_for(k, self.policies) for k in names]
        self.retry_policy = retry_policy
        self.signals = signals if signals is not None else WorkerSignals()
        self._limiter = RateLimiter(limits_of(self.kinds, config.backend_rate_limit))
        # Headers the backend rewrites (SES: Message-ID, Date) stay out of the signature.
        self._dkim = (
            DkimSigner(config.dkim, unsigned_headers=getattr(sender, "unsigned_headers", ()))
            if config.dkim
            else None
        )
        self._unsubscribe = unsubscribe or UnsubscribeLinks(
            load_secret_key(settings), settings.public_url, config.unsubscribe_mailto
        )
        self._verp = _verp(settings, sender)
        self.identity = _identity(settings, self.kinds)
        # Sends run on this many long-lived lanes (see mailq.worker.lanes).
        self._lane_count = max(1, sender_parallelism or settings.concurrency)
        self._observer = observer
        self._ledger = _ledger(settings.concurrency, self.kinds)
        self._wakeup = Wakeup()
        self._stopping = asyncio.Event()
        self._stopped = asyncio.Event()
        self._running = False
        self._recorder: Recorder | None = None
        self._backend_hold = BackendHold(self._limiter)

    @property
    def totals(self) -> Tally:
        """What the worker's summaries have counted so far."""
        return self._recorder.totals if self._recorder is not None else Tally()

    def stop(self) -> None:
        """Stop claiming, finish what is in flight (within the grace period), hand back the
        rest. Safe to call before `run`, twice, or from a signal handler."""
        self._stopping.set()
        self._wakeup.wake()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    async def run(self, *, until_empty: bool = False) -> None:
        """Work until `stop()`; with `until_empty`, also return once nothing is due or in
        flight (tests and one-shot drains). Returns at once after `stop()` or a finished run."""
        if self._running:
            raise RuntimeError("this worker is already running")
        if self._stopping.is_set():
            return
        pool = await _open_unless_stopped(self._dsn, self._stopping)
        if pool is None:
            return  # stopped while it was connecting
        self._running = True
        try:
            await ensure_current(pool)
            await self._limiter.configure(pool)
            await self._work(pool, until_empty)
        finally:
            if self._recorder is not None:
                self._recorder.log_summary(force=True)
            await pool.close()
            await self.sender.close()
            self._stopped.set()
            self._running = False

    async def _work(self, pool: asyncpg.Pool, until_empty: bool) -> None:
        """Start every loop, claim until stopped (or drained), then shut down in order."""
        proof = LeaseProof(self._ledger, self.identity.id)
        heartbeat = Heartbeat(
            self._dsn,
            self.identity,
            lease_s=self.settings.lease_s,
            interval_s=self.settings.heartbeat_interval_s,
            on_due_in=self._wakeup.wake_in,
            on_connected=self._wakeup.wake_for_news,
            on_lapsed=proof.check_claims,
        )
        proof.watch(heartbeat)
        breaker = Breaker(
            self.sender,
            self.identity.id,
            probe_timeout_s=self.settings.smtp_connect_timeout_s + PROBE_TIMEOUT_MARGIN_S,
        )
        lanes: Lanes | None = None

        def freed() -> None:
            # Slots came free: lanes may start what waits, the claimer may claim more.
            if lanes is not None:
                lanes.wake()
            self._wakeup.wake()

        recorder = self._recorder = Recorder(
            pool, self.identity.id, self._ledger, on_freed=freed, signal=self.signals.recorded
        )
        lanes = self._lanes(pool, recorder, proof, breaker)
        claimer = self._claimer(pool, heartbeat, lanes, recorder, breaker, proof)
        control = asyncio.create_task(heartbeat.run(), name="mailq-heartbeat")
        recording = asyncio.create_task(recorder.run(), name="mailq-recorder")
        lanes.start()
        duties = asyncio.create_task(
            DutyRunner(pool, _duties(self.settings, heartbeat, self.signals)).run(),
            name="mailq-duties",
        )
        try:
            await self._wait_registered(heartbeat, control)
            logger.info(
                "worker started",
                extra={
                    "action": "worker_started",
                    "worker_id": str(self.identity.id),
                    "kinds": list(self.identity.kinds),
                    "concurrency": self.settings.concurrency,
                },
            )
            await claimer.run(until_empty)
        finally:
            await self._shutdown(pool, lanes, recorder, recording)
            duties.cancel()
            heartbeat.stop()
            await asyncio.gather(duties, control, return_exceptions=True)
            await _forget_lease(pool, self.identity.id)

    def _lanes(
        self, pool: asyncpg.Pool, recorder: Recorder, proof: LeaseProof, breaker: Breaker
    ) -> Lanes:
        attempts = SendAttempts(
            pool,
            self.identity,
            self.sender,
            policies=self.policies,
            retry_policy=self.retry_policy,
            redirect_all_to=self.settings.redirect_all_to,
            unsubscribe=self._unsubscribe,
            dkim=self._dkim,
            feedback_sender_id=self.config.feedback_sender_id,
            on_retry_after=lambda seconds: self._backend_hold.request(pool, seconds),
            proof=proof,
            breaker=breaker,
            verp=self._verp,
        )
        return Lanes(
            self._lane_count,
            attempts,
            self._ledger,
            on_result=recorder.add,
            stopping=self._stopping,
            observer=self._observer,
        )

    def _claimer(
        self,
        pool: asyncpg.Pool,
        heartbeat: Heartbeat,
        lanes: Lanes,
        recorder: Recorder,
        breaker: Breaker,
        proof: LeaseProof,
    ) -> Claimer:
        return Claimer(
            pool,
            self.identity,
            self.settings,
            self.kinds,
            limiter=self._limiter,
            ledger=self._ledger,
            lanes=lanes,
            wakeup=self._wakeup,
            stopping=self._stopping,
            lease_left_s=heartbeat.lease_left_s,
            settled=lambda: recorder.settled,
            on_turn=recorder.log_summary,
            breaker=breaker,
            proof=proof,
        )

    async def _wait_registered(self, heartbeat: Heartbeat, control: asyncio.Task[None]) -> None:
        registered = asyncio.ensure_future(heartbeat.registered.wait())
        stopping = asyncio.ensure_future(self._stopping.wait())
        await asyncio.wait({registered, stopping, control}, return_when=asyncio.FIRST_COMPLETED)
        registered.cancel()
        stopping.cancel()

    # -- shutdown --------------------------------------------------------------------------

    async def _shutdown(
        self,
        pool: asyncpg.Pool,
        lanes: Lanes,
        recorder: Recorder,
        recording: asyncio.Task[None],
    ) -> None:
        """Hand back unstarted claims, let started sends finish within the grace period,
        record every outcome, then stop recording."""
        self._stopping.set()
        lanes.close()
        unstarted = self._ledger.unstarted()
        if unstarted:
            await _hand_back(pool, self._ledger, unstarted, self.identity.id)
        cancelled = await lanes.finish(self.settings.shutdown_grace_s)
        if cancelled:
            logger.warning(
                "%d sends did not finish within the grace period; their emails will be "
                "taken back by another worker",
                cancelled,
                extra={"action": "grace_expired", "count": cancelled},
            )
        recorder.close()
        try:
            await asyncio.wait_for(recording, timeout=max(self.settings.shutdown_grace_s, 5.0))
        except TimeoutError:
            logger.warning(
                "%d outcomes could not be written before exit; those emails will be taken back",
                recorder.unwritten,
                extra={"action": "outcomes_unwritten", "count": recorder.unwritten},
            )


async def _hand_back(
    pool: asyncpg.Pool, ledger: SlotLedger, emails: list[ClaimedEmail], worker_id: uuid.UUID
) -> None:
    try:
        released = await email_release(pool, emails, worker_id)
    except DATABASE_ERRORS as exc:
        logger.warning("could not hand back %d emails: %s", len(emails), exc)
        return
    ledger.free_handed_back(emails)
    logger.info(
        "handed back %d claimed emails that had not started",
        len(released),
        extra={"action": "handed_back", "count": len(released)},
    )


async def _forget_lease(pool: asyncpg.Pool, worker_id: uuid.UUID) -> None:
    try:
        await worker_lease_delete(pool, worker_id)
    except DATABASE_ERRORS as exc:
        logger.warning("could not remove the worker's lease: %s", exc)


def _ledger(concurrency: int, kinds: Sequence[KindPolicy]) -> SlotLedger:
    """At most `concurrency` sends without a committed outcome; a worker that sends
    `welcome` keeps some of them for it (mailq.kinds.welcome_reserve)."""
    if any(k.name == WELCOME for k in kinds):
        return SlotLedger(concurrency, reserved_kind=WELCOME, reserve=welcome_reserve(concurrency))
    return SlotLedger(concurrency)


def _verp(settings: Settings, sender: Sender) -> Verp | None:
    """VERP envelope senders: with MAILQ_BOUNCE_DOMAIN, on backends that take them (SMTP)."""
    if not settings.bounce_domain or not getattr(sender, "verp_envelope", False):
        return None
    return Verp.from_secret(settings.bounce_domain, load_secret_key(settings))


def _identity(settings: Settings, kinds: Sequence[KindPolicy]) -> WorkerIdentity:
    return WorkerIdentity(
        id=uuid.uuid4(),
        hostname=socket.gethostname(),
        pid=os.getpid(),
        kinds=tuple(k.name for k in kinds),
        concurrency=settings.concurrency,
    )


async def _open_unless_stopped(dsn: str, stopping: asyncio.Event) -> asyncpg.Pool | None:
    """The worker's pool; None when the worker was stopped first (a worker told to stop while
    it starts exits at once, exit 0)."""
    opening = asyncio.ensure_future(
        open_pool(dsn, max_size=POOL_SIZE, command_timeout=60, reset=keep_session)
    )
    stopped = asyncio.ensure_future(stopping.wait())
    await asyncio.wait({opening, stopped}, return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    if not opening.done():
        opening.cancel()
        await asyncio.gather(opening, return_exceptions=True)
        return None
    return opening.result()


def _duties(settings: Settings, heartbeat: Heartbeat, signals: WorkerSignals) -> list[Duty]:
    lease_s = settings.lease_s

    def may_rescue() -> bool:
        # Not a worker just back from an outage of its own (or of the database): the others
        # it was cut off with must first have had the time to register again.
        return heartbeat.connected_for_s() > lease_s and heartbeat.lease_left_s() > 0

    return [
        RescueExpired(lease_s, signal=signals.rescued, may_rescue=may_rescue),
        ForgetDeadWorkers(signal=signals.forgotten),
        PruneFinished(timedelta(days=settings.retention_days), signal=signals.pruned),
    ]
