"""A TCP proxy on loopback that a test can make fail on demand (database or SMTP links).

    with FaultProxy("127.0.0.1", 5432) as proxy:     # clients connect to proxy.port
        proxy.stall()      # connections stay open, no byte goes through either way
        proxy.cut()        # every current connection is reset
        proxy.refuse()     # new connections are refused (nothing listens); open ones go on
        proxy.pass_through()

It runs its own event loop in a background thread, so that a test blocked in a driver call
(or a subprocess wait) does not freeze the link, and so that mode changes take effect
before the call returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

T = TypeVar("T")

CHUNK = 64 * 1024


class Mode(enum.Enum):
    PASS = "pass"  # forward bytes both ways
    REFUSE = "refuse"  # not listening: a new connection gets ECONNREFUSED
    STALL = "stall"  # connections are accepted and kept, nothing is forwarded


class _Link:
    """One client connection and its upstream connection."""

    def __init__(self, client: asyncio.StreamWriter) -> None:
        self.client = client
        self.upstream: asyncio.StreamWriter | None = None
        self.task: asyncio.Task[None] | None = None

    def abort(self) -> None:
        for writer in (self.client, self.upstream):
            if writer is not None:
                writer.transport.abort()


def postgres_upstream(url: str) -> tuple[str, int]:
    """Where the server of a PostgreSQL URL listens: (host, port), the host a Unix socket's
    folder for a URL like the embedded server's (postgresql://postgres:@/postgres?host=/tmp/…),
    which listens on no TCP port."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    return query.get("host") or parts.hostname or "127.0.0.1", int(
        query.get("port") or parts.port or 5432
    )


def through(url: str, proxy: FaultProxy) -> str:
    """The PostgreSQL URL `url` with its server replaced by the proxy (TCP on loopback)."""
    parts = urlsplit(url)
    user, at, _ = parts.netloc.rpartition("@")
    query = [(k, v) for k, v in parse_qsl(parts.query) if k not in ("host", "port")]
    netloc = f"{user}{at}{proxy.host}:{proxy.port}"
    return urlunsplit(parts._replace(netloc=netloc, query=urlencode(query)))


class FaultProxy:
    def __init__(self, upstream_host: str, upstream_port: int, host: str = "127.0.0.1") -> None:
        """`upstream_host` may be a Unix socket's folder (PostgreSQL's: .s.PGSQL.<port>)."""
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.host = host
        self.port = 0
        self.mode = Mode.PASS
        self.accepted = 0  # connections accepted in all
        self.cuts = 0  # connections reset by cut()
        self._links: set[_Link] = set()
        self._server: asyncio.Server | None = None
        self._flowing: asyncio.Event | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    # -- the test's side -------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()
        self._call(self._start())

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        self._call(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> FaultProxy:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    @property
    def connections(self) -> int:
        """Connections open through the proxy right now."""
        return self._call(self._count())

    def pass_through(self) -> None:
        self._call(self._set(Mode.PASS))

    def refuse(self) -> None:
        self._call(self._set(Mode.REFUSE))

    def stall(self) -> None:
        self._call(self._set(Mode.STALL))

    def cut(self) -> int:
        """Reset every current connection (both ends); returns how many. The mode stays."""
        return self._call(self._cut())

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=30)

    # -- the loop's side -------------------------------------------------------------------

    async def _start(self) -> None:
        self._flowing = asyncio.Event()
        self._flowing.set()
        await self._listen()

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(
            self._accept, self.host, self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        await self._cut()

    async def _count(self) -> int:
        return len(self._links)

    async def _set(self, mode: Mode) -> None:
        assert self._flowing is not None
        if mode is Mode.REFUSE and self._server is not None:
            # Not awaiting wait_closed(): it waits for the open connections to end.
            self._server.close()
            self._server = None
        elif mode is not Mode.REFUSE and self._server is None:
            await self._listen()
        if mode is Mode.STALL:
            self._flowing.clear()
        else:
            self._flowing.set()
        self.mode = mode

    async def _cut(self) -> int:
        links = list(self._links)
        self._links.clear()
        for link in links:
            link.abort()
            if link.task is not None:
                link.task.cancel()
        # Let the handlers end before the caller goes on (or the loop stops).
        await asyncio.gather(*(link.task for link in links if link.task), return_exceptions=True)
        self.cuts += len(links)
        return len(links)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        link = _Link(writer)
        link.task = asyncio.current_task()
        self._links.add(link)
        try:
            await self._relay(link, reader)
        except (OSError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            # cut() or stop(): the connection is reset, the handler ends quietly.
            pass
        finally:
            self._links.discard(link)
            link.abort()

    async def _relay(self, link: _Link, client_reader: asyncio.StreamReader) -> None:
        assert self._flowing is not None
        # A connection accepted while stalled is held before anything reaches upstream.
        await self._flowing.wait()
        if self.upstream_host.startswith("/"):
            socket_path = f"{self.upstream_host}/.s.PGSQL.{self.upstream_port}"
            upstream_reader, link.upstream = await asyncio.open_unix_connection(socket_path)
        else:
            upstream_reader, link.upstream = await asyncio.open_connection(
                self.upstream_host, self.upstream_port
            )
        pumps = [
            asyncio.create_task(self._pump(client_reader, link.upstream)),
            asyncio.create_task(self._pump(upstream_reader, link.client)),
        ]
        try:
            # Either side closing ends the link: the other side is reset with it.
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._flowing is not None
        with contextlib.suppress(OSError):
            while True:
                data = await reader.read(CHUNK)
                if not data:
                    return
                await self._flowing.wait()  # stalled: held here, nothing forwarded
                writer.write(data)
                await writer.drain()
