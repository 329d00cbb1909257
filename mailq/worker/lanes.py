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
from collections.abc import Callable
from datetime import UTC, datetime

from mailq.models import AttemptResult
from mailq.worker.attempts import AttemptObserver, SendAttempts
from mailq.worker.slots import Slot

logger = logging.getLogger(__name__)


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
