"""A worker's control connection: LISTEN for wake-ups and renew the worker's lease.

One dedicated connection per worker process (LISTEN needs its own). It reconnects by itself
when Postgres restarts or the connection is cut, listens again and wakes the worker, so that
nothing enqueued while it was away waits for the fallback poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import asyncpg

from mailq.db.connection import DATABASE_ERRORS
from mailq.db.leases import WorkerIdentity, worker_lease_register, worker_lease_renew
from mailq.worker.backoff import Backoff

logger = logging.getLogger(__name__)

CHANNEL = "mailq_emails"
RECONNECT_MIN_S = 0.2
RECONNECT_MAX_S = 5.0


class Heartbeat:
    def __init__(
        self,
        dsn: str,
        identity: WorkerIdentity,
        *,
        lease_s: float,
        interval_s: float,
        on_due_in: Callable[[float], None],
        on_connected: Callable[[], None],
    ) -> None:
        self._dsn = dsn
        self._identity = identity
        self._lease_s = lease_s
        self._interval_s = interval_s
        self._on_due_in = on_due_in
        self._on_connected = on_connected
        self.registered = asyncio.Event()
        self._stopping = asyncio.Event()
        self.reconnects = 0
        self._backoff = Backoff(
            logger,
            "control connection lost; reconnecting",
            "connection_lost",
            min_s=RECONNECT_MIN_S,
            max_s=RECONNECT_MAX_S,
            extra={"worker_id": str(identity.id)},
        )
        # Loop time until which our lease is known to hold, from the last renewal's start.
        self._lease_until = 0.0

    def lease_left_s(self) -> float:
        """Seconds our lease surely has left; the worker claims only while it has plenty."""
        return self._lease_until - asyncio.get_running_loop().time()

    async def _renew(self, conn: asyncpg.Connection, register: bool) -> bool:
        started = asyncio.get_running_loop().time()
        if register:
            await worker_lease_register(conn, self._identity, self._lease_s)
            renewed = True
        else:
            renewed = await asyncio.wait_for(
                worker_lease_renew(conn, self._identity.id, self._lease_s),
                timeout=self._interval_s,
            )
        if renewed:
            self._lease_until = started + self._lease_s
        return renewed

    def stop(self) -> None:
        self._stopping.set()

    def _notified(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        try:
            due_in = float(payload)
        except ValueError:
            due_in = 0.0
        self._on_due_in(due_in)

    async def run(self) -> None:
        first = True
        while not self._stopping.is_set():
            lost = asyncio.Event()
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(self._dsn, timeout=10)
                conn.add_termination_listener(_setter(lost))
                await conn.add_listener(CHANNEL, self._notified)
                await self._renew(conn, register=True)
                self.registered.set()
                if not first:
                    self.reconnects += 1
                    logger.info(
                        "control connection restored",
                        extra={"action": "reconnected", "worker_id": str(self._identity.id)},
                    )
                first = False
                self._backoff.succeeded()
                self._on_connected()
                await self._beat(conn, lost)
            except DATABASE_ERRORS as exc:
                if self._stopping.is_set():
                    break
                await self._backoff.pause(exc, sleep=self._sleep)
            finally:
                if conn is not None and not conn.is_closed():
                    conn.terminate()

    async def _sleep(self, timeout: float) -> None:
        await _wait(self._stopping, timeout)

    async def _beat(self, conn: asyncpg.Connection, lost: asyncio.Event) -> None:
        while not self._stopping.is_set():
            await _wait_any(self._stopping, lost, self._interval_s)
            if self._stopping.is_set():
                return
            if lost.is_set() or conn.is_closed():
                raise ConnectionResetError("the control connection was closed")
            if not await self._renew(conn, register=False):
                # Taken for dead (lease expired while we were cut off): the claims we held
                # were handed to other workers, and our late results will be refused.
                logger.warning(
                    "lease was lost and is registered again",
                    extra={"action": "lease_lost", "worker_id": str(self._identity.id)},
                )
                await self._renew(conn, register=True)


def _setter(event: asyncio.Event) -> Callable[[object], None]:
    return lambda _conn: event.set()


async def _wait(event: asyncio.Event, timeout: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout)


async def _wait_any(a: asyncio.Event, b: asyncio.Event, timeout: float) -> None:
    waiters = [asyncio.ensure_future(a.wait()), asyncio.ensure_future(b.wait())]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
