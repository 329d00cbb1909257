"""A worker's control connection: LISTEN for wake-ups and renew the worker's lease.

One dedicated connection per worker process (LISTEN needs its own). It reconnects by itself
when Postgres restarts or the connection is cut, registers the lease again, listens again and
wakes the worker, so that nothing enqueued while it was away waits for the fallback poll.

The lease is what the worker's sends stand on (mailq.worker.lease): it counts as proven
until the start of the last successful renewal plus the lease. A renewal of a lease that had
expired fails (the statement says so), and a registration after a lost connection says
whether the lease had lapsed: either way the worker is told it lost its lease, and the lease
counts as proven again only once `on_lapsed` has checked which claims it still holds.
Reconnecting is quick (at most a quarter of a lease between tries), so that a worker cut off
with its database registers again well before a rescuer may take its claims (the rescue
waits until the rescuer itself has been connected for a whole lease).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import asyncpg

from mailq.db.connection import DATABASE_ERRORS
from mailq.db.leases import WorkerIdentity, worker_lease_register, worker_lease_renew
from mailq.worker.backoff import Backoff

logger = logging.getLogger(__name__)

CHANNEL = "mailq_emails"
RECONNECT_MIN_S = 0.2
RECONNECT_MAX_S = 5.0
CONNECT_TIMEOUT_S = 10.0


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
        on_lapsed: Callable[[asyncpg.Connection], Awaitable[None]] | None = None,
    ) -> None:
        """`on_lapsed(conn)` runs when the lease is registered again after it lapsed, before
        it counts as proven (the worker checks which claims it still holds)."""
        self._dsn = dsn
        self._identity = identity
        self._lease_s = lease_s
        self._interval_s = interval_s
        self._on_due_in = on_due_in
        self._on_connected = on_connected
        self._on_lapsed = on_lapsed
        self.registered = asyncio.Event()
        self._stopping = asyncio.Event()
        self._renewed = asyncio.Event()
        self.reconnects = 0
        self.lapses = 0
        self._backoff = Backoff(
            logger,
            "control connection lost; reconnecting",
            "connection_lost",
            min_s=RECONNECT_MIN_S,
            max_s=min(RECONNECT_MAX_S, lease_s / 4),
            extra={"worker_id": str(identity.id)},
        )
        # Loop time until which our lease is known to hold, from the last renewal's start.
        self._lease_until = 0.0
        # Loop time since which the control connection has been up (None: it is not).
        self._connected_at: float | None = None

    def lease_left_s(self) -> float:
        """Seconds our lease surely has left: the worker claims only while it has plenty, and
        sends only while it has some (mailq.worker.lease)."""
        return self._lease_until - asyncio.get_running_loop().time()

    def connected_for_s(self) -> float:
        """Seconds the control connection has been up without a break (0: it is down)."""
        if self._connected_at is None:
            return 0.0
        return asyncio.get_running_loop().time() - self._connected_at

    async def wait_renewed(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for the next successful renewal; True if it came."""
        try:
            await asyncio.wait_for(self._renewed.wait(), max(0.0, timeout))
        except TimeoutError:
            return False
        return True

    def _proven(self, since: float) -> None:
        self._lease_until = since + self._lease_s
        renewed, self._renewed = self._renewed, asyncio.Event()
        renewed.set()

    async def _renew(self, conn: asyncpg.Connection, register: bool) -> bool:
        started = asyncio.get_running_loop().time()
        if not register:
            renewed = await asyncio.wait_for(
                worker_lease_renew(conn, self._identity.id, self._lease_s),
                timeout=self._interval_s,
            )
            if renewed:
                self._proven(started)
            return renewed
        lapsed = await asyncio.wait_for(
            worker_lease_register(conn, self._identity, self._lease_s),
            timeout=max(self._interval_s, CONNECT_TIMEOUT_S),
        )
        if lapsed and self.registered.is_set():
            self.lapses += 1
            if self._on_lapsed is not None:
                await self._on_lapsed(conn)
        self._proven(started)
        return True

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
                conn = await asyncpg.connect(
                    self._dsn, timeout=min(CONNECT_TIMEOUT_S, max(1.0, self._lease_s / 2))
                )
                conn.add_termination_listener(_setter(lost))
                await conn.add_listener(CHANNEL, self._notified)
                await self._renew(conn, register=True)
                self._connected_at = asyncio.get_running_loop().time()
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
                self._connected_at = None
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
                # The lease had expired (the worker was frozen, or its renewals were late): its
                # claims may have been taken back. Unproven until they are checked.
                self._lease_until = 0.0
                logger.warning(
                    "lease lost: it expired before the heartbeat renewed it; registering again "
                    "and checking which claims are still held before sending more",
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
