"""Send lanes: a fixed number of long-lived tasks that take claimed emails from one queue,
build each message, send it and hand the outcome to the recorder.

The lane count bounds the sends in progress, without a task and a semaphore per email, and
the slot ledger bounds the started emails whose outcome is not committed yet (`may_start`:
at most the worker's concurrency). A lane whose sender answers at once (null, file) works
through a whole claimed batch in one go. Claimed emails wait by rank: `welcome` (the kind
with reserved slots) first, then by priority, so a welcome claimed behind a buffer of
campaign emails goes out next.

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
from collections.abc import Callable
from datetime import UTC, datetime

from mailq.kinds import WELCOME
from mailq.models import AttemptResult
from mailq.worker.attempts import AttemptObserver, SendAttempts
from mailq.worker.slots import Slot, SlotLedger

logger = logging.getLogger(__name__)

_RANKS = 11  # the reserved kind, then priorities 0..9


class _Waiting:
    """Claimed emails not started yet, in the order they are to start."""

    def __init__(self, ledger: SlotLedger) -> None:
        self._ledger = ledger
        self._queues: list[deque[Slot]] = [deque() for _ in range(_RANKS)]
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def extend(self, slots: list[Slot]) -> None:
        queues = self._queues
        for slot in slots:
            email = slot.email
            rank = 0 if email.kind == WELCOME else 1 + min(max(email.priority, 0), 9)
            queues[rank].append(slot)
        self._count += len(slots)

    def clear(self) -> None:
        for queue in self._queues:
            queue.clear()
        self._count = 0

    def _head(self) -> deque[Slot] | None:
        """The queue whose first email is next, if the ledger lets it start now. (When the
        first email may not start, none behind it may: the ledger's rule only sets the
        reserved kind apart, and that kind waits first.)"""
        if not self._count:
            return None
        for queue in self._queues:
            if queue:
                return queue if self._ledger.may_start(queue[0].email.kind) else None
        return None  # pragma: no cover

    def ready(self) -> bool:
        return self._head() is not None

    def pop(self) -> Slot | None:
        """The next email that may start now, taken off the queue; None when none may."""
        queue = self._head()
        if queue is None:
            return None
        self._count -= 1
        return queue.popleft()


class Lanes:
    """The lanes and their queue of claimed emails (slots) waiting to be sent."""

    def __init__(
        self,
        count: int,
        attempts: SendAttempts,
        ledger: SlotLedger,
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
        self._ledger = ledger
        self._pending = _Waiting(ledger)
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

    def wake(self) -> None:
        """Slots came free: a lane waiting for one may start an email now."""
        if self._pending.ready():
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
        start = self._ledger.start
        while True:
            slot = pending.pop()
            if slot is None:
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
            if self._stopping.is_set():
                continue  # not started: handed back at shutdown
            start(slot)
            if batch > 1 and pending.ready():
                await self._send_batch(slot, batch)
                continue
            if pending.ready():
                self._wake_one()
            began = loop.time()
            result = await attempt(slot.email, datetime.now(UTC))
            if self._observer is not None:
                self._observe(result, loop.time() - began)
            self._on_result(result)

    async def _send_batch(self, first: Slot, batch: int) -> None:
        """`first` (started) and the claimed emails already waiting that may start, up to
        `batch`, in one send."""
        pending = self._pending
        slots = [first]
        while len(slots) < batch and (slot := pending.pop()) is not None:
            self._ledger.start(slot)
            slots.append(slot)
        if pending.ready():
            self._wake_one()
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
