"""The worker each service process runs beside its HTTP handlers (MAILQ_EMBEDDED_WORKER=1).

It is an ordinary mailq Worker: with `uvicorn --workers 4` there are four of them, claiming
from one queue with SKIP LOCKED like any four worker processes, so no email is sent twice.
If the worker stops on an unexpected error it is started again after a pause, so that mail
never silently stops while the service still answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from mailq.config import DEFAULT_CONFIG, Config
from mailq.delivery.backends import sender_from_url
from mailq.delivery.replies import Quirk
from mailq.delivery.sender import Sender
from mailq.settings import Settings
from mailq.worker.worker import AttemptObserver, Worker

logger = logging.getLogger(__name__)

RESTART_MIN_S = 1.0
RESTART_MAX_S = 30.0
# Beyond the worker's own grace period, how long shutdown waits for it before giving up.
STOP_MARGIN_S = 10.0

SenderFactory = Callable[[Settings], Sender]


def default_sender(settings: Settings, quirks: Sequence[Quirk] | None = None) -> Sender:
    return sender_from_url(
        settings.backend_url,
        connections=settings.concurrency,
        connect_timeout_s=settings.smtp_connect_timeout_s,
        reply_timeout_s=settings.smtp_reply_timeout_s,
        quirks=quirks,
        helo_name=settings.helo_name,
    )


class EmbeddedWorker:
    def __init__(
        self,
        settings: Settings,
        *,
        make_sender: SenderFactory = default_sender,
        observer: AttemptObserver | None = None,
        config: Config = DEFAULT_CONFIG,
    ) -> None:
        self.settings = settings
        self.config = config
        self._make_sender = make_sender
        self._observer = observer
        self._worker: Worker | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self.started_at: datetime | None = None
        self.restarts = 0

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done() and self._worker is not None

    @property
    def worker_id(self) -> str | None:
        return None if self._worker is None else str(self._worker.identity.id)

    def start(self) -> None:
        if self._task is None:
            self.started_at = datetime.now(UTC)
            self._task = asyncio.create_task(self._supervise(), name="mailq-embedded-worker")

    async def _supervise(self) -> None:
        pause = RESTART_MIN_S
        while not self._stopping.is_set():
            try:
                sender = self._make_sender(self.settings)
                worker = Worker(self.settings, sender, observer=self._observer, config=self.config)
                self._worker = worker
                await worker.run()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception(
                    "the embedded worker stopped on an error; starting it again in %.0fs",
                    pause,
                    extra={"action": "embedded_worker_failed"},
                )
            else:
                if self._stopping.is_set():
                    return
            self._worker = None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), pause)
            pause = min(RESTART_MAX_S, pause * 2)
            self.restarts += 1

    async def stop(self) -> None:
        """Graceful: the worker finishes what it is sending (within its grace period) and
        hands back what it claimed but did not start."""
        self._stopping.set()
        if self._worker is not None:
            self._worker.stop()
        if self._task is None:
            return
        timeout = self.settings.shutdown_grace_s + STOP_MARGIN_S
        done, _ = await asyncio.wait({self._task}, timeout=timeout)
        if not done:
            logger.warning(
                "the embedded worker did not stop within %.0fs; cancelling it",
                timeout,
                extra={"action": "embedded_worker_cancelled"},
            )
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
