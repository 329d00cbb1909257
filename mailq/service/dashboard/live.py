"""Live updates of the overview: server-sent events, woken by LISTEN/NOTIFY.

One hub per service process holds one LISTEN connection (on `mailq_emails`, which every
statement that leaves emails waiting notifies, and `mailq_dashboard`, which every dashboard
action notifies) for all the browsers watching. A notification is debounced (DEBOUNCE_S:
a burst of enqueues is one update), then the overview's regions are computed once and sent
to every subscriber whose view differs. Sends and failures notify nothing, so the hub also
looks every TICK_S. With nobody watching for IDLE_S, the hub closes its connection.

A stream ends after STREAM_S (the browser reconnects at once): a service that is shutting
down is never held up by a tab left open. The page falls back to polling /dashboard/live.json
when the stream fails, and stops both while the tab is hidden (dashboard.js).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import orjson
from starlette.responses import Response, StreamingResponse

from mailq.service.dashboard import deliverability, overview, timing
from mailq.service.dashboard.guard import Context, page
from mailq.service.state import Service

logger = logging.getLogger(__name__)

CHANNELS = ("mailq_emails", "mailq_dashboard")
DEBOUNCE_S = 0.25
TICK_S = 5.0
IDLE_S = 30.0
STREAM_S = 25.0
KEEPALIVE_S = 10.0
RETRY_MS = 1000


class Hub:
    def __init__(self, service: Service) -> None:
        self.service = service
        self.subscribers: set[asyncio.Queue[str]] = set()
        self.wake = asyncio.Event()
        self.latest: str | None = None
        self.task: asyncio.Task[None] | None = None
        self.listener: asyncpg.Connection | None = None
        self.last_seen = time.monotonic()
        # How long the last update took, and of it its queries.
        self.last_update_s = 0.0
        self.last_update_db_s = 0.0

    def _notified(self, *_args: Any) -> None:
        self.wake.set()

    async def _listen(self) -> None:
        url = self.service.settings.database_url
        if not url:
            return
        try:
            self.listener = await asyncpg.connect(url)
            for channel in CHANNELS:
                await self.listener.add_listener(channel, self._notified)
        except (OSError, asyncpg.PostgresError) as exc:
            # Without LISTEN the ticks still update the page, only later.
            logger.warning("dashboard LISTEN failed: %s", exc, extra={"action": "live_listen"})
            self.listener = None

    async def _run(self) -> None:
        await self._listen()
        try:
            while self.subscribers or time.monotonic() - self.last_seen < IDLE_S:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), TICK_S)
                    await asyncio.sleep(DEBOUNCE_S)
                self.wake.clear()
                if not self.subscribers:
                    continue
                self.last_seen = time.monotonic()
                try:
                    message = await self.update()
                except (OSError, asyncpg.PostgresError) as exc:
                    logger.warning("dashboard update failed: %s", exc)
                    continue
                if message != self.latest:
                    self.latest = message
                    for queue in list(self.subscribers):
                        _offer(queue, message)
        finally:
            if self.listener is not None:
                with contextlib.suppress(Exception):
                    await self.listener.close()
                self.listener = None
            self.task = None

    async def update(self) -> str:
        began = time.perf_counter()
        with timing.measuring() as spent:
            values = await overview.snapshot(
                self.service.pool, deliverability.bounce_rules(self.service)
            )
            self.last_update_s = time.perf_counter() - began
            self.last_update_db_s = await timing.settled(spent)
        return orjson.dumps({"regions": overview.render_regions(values)}).decode()

    def subscribe(self) -> asyncio.Queue[str]:
        queue: asyncio.Queue[str] = asyncio.Queue(maxsize=1)
        self.subscribers.add(queue)
        self.last_seen = time.monotonic()
        if self.task is None:
            self.task = asyncio.create_task(self._run(), name="mailq-dashboard-live")
        return queue

    def unsubscribe(self, queue: asyncio.Queue[str]) -> None:
        self.subscribers.discard(queue)
        self.last_seen = time.monotonic()


def _offer(queue: asyncio.Queue[str], message: str) -> None:
    """Only the newest view matters: a slow reader gets it in place of the one it missed."""
    if queue.full():
        with contextlib.suppress(asyncio.QueueEmpty):
            queue.get_nowait()
    queue.put_nowait(message)


def hub_of(ctx: Context) -> Hub:
    state = ctx.request.app.state
    hub: Hub | None = getattr(state, "dashboard_hub", None)
    if hub is None or hub.service is not ctx.service:
        hub = Hub(ctx.service)
        state.dashboard_hub = hub
    return hub


@page
async def events(ctx: Context) -> Response:
    hub = hub_of(ctx)
    queue = hub.subscribe()

    async def stream() -> AsyncIterator[bytes]:
        try:
            yield f"retry: {RETRY_MS}\n\n".encode()
            if hub.latest is not None:
                yield f"event: overview\ndata: {hub.latest}\n\n".encode()
            else:
                hub.wake.set()
            ends = time.monotonic() + STREAM_S
            while (left := ends - time.monotonic()) > 0:
                try:
                    message = await asyncio.wait_for(queue.get(), min(left, KEEPALIVE_S))
                except TimeoutError:
                    yield b": keep-alive\n\n"
                    continue
                yield f"event: overview\ndata: {message}\n\n".encode()
        finally:
            hub.unsubscribe(queue)

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
