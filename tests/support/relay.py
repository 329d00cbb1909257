"""A recording SMTP relay for the chaos tests, whose failure mode the test switches at run time.

A small SMTP server on raw asyncio (in a thread of its own, like the fault proxy), written
for counting: every accepted message is recorded with its Message-ID (the email's id in
mailq: the same on every attempt) and the times its DATA command began and its 250 was
written, so the test can count each email's deliveries (lost = never received, duplicate =
received more than once) and see when they happened.

Modes:
- ACCEPT: a plain relay (each DATA answered `250` after `delay_s`, each RCPT after
  `rcpt_delay_s`: a slow relay);
- REFUSE: nothing listens (connect: ECONNREFUSED);
- GREET_421: the greeting is `421 4.3.2 Service not available` and the connection closes;
- HANG: the connection is accepted and never greeted.
Leaving ACCEPT closes the sessions that are open (a relay that goes down drops them); a
message is recorded exactly when its `250` is written, so one dropped before its reply is
not recorded, and one recorded has its reply on the wire (closed gracefully, not reset).
"""

from __future__ import annotations

import asyncio
import enum
import re
import threading
import time
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")

_MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*(\S+)[ \t]*\r?$", re.MULTILINE | re.IGNORECASE)
MAX_LINE = 64 * 1024


class RelayMode(enum.Enum):
    ACCEPT = "accept"
    REFUSE = "refuse"
    GREET_421 = "421"
    HANG = "hang"


@dataclass(frozen=True, slots=True)
class Delivery:
    message_id: str
    mail_from: str
    recipients: tuple[str, ...]
    session: int  # which connection it came on (numbered from 1)
    data_began: float  # time.time() when the DATA command arrived
    accepted_at: float  # time.time() when the 250 was written
    size: int


class _Session:
    def __init__(self, number: int, writer: asyncio.StreamWriter) -> None:
        self.number = number
        self.writer = writer
        self.task: asyncio.Task[None] | None = None

    def close(self) -> None:
        # Gracefully (FIN after what was written), so a 250 already written still arrives.
        self.writer.close()
        if self.task is not None:
            self.task.cancel()


class RecordingRelay:
    def __init__(
        self, delay_s: float = 0.0, host: str = "127.0.0.1", *, rcpt_delay_s: float = 0.0
    ) -> None:
        """`delay_s`: each DATA is answered after this long; `rcpt_delay_s`: each RCPT
        (a send then spends its time before DATA)."""
        self.delay_s = delay_s
        self.rcpt_delay_s = rcpt_delay_s
        self.host = host
        self.port = 0
        self.mode = RelayMode.ACCEPT
        self._deliveries: list[Delivery] = []
        self._lock = threading.Lock()
        self._connections: Counter[RelayMode] = Counter()
        self._sessions: set[_Session] = set()
        self._numbered = 0
        self._server: asyncio.Server | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    # -- the test's side -------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"smtp://{self.host}:{self.port}?tls=none"

    def start(self) -> None:
        self._thread.start()
        self._call(self._listen())

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        self._call(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> RecordingRelay:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def set_mode(self, mode: RelayMode) -> None:
        """Switch at once; the sessions open in the old mode are closed."""
        self._call(self._set(mode))

    @property
    def deliveries(self) -> list[Delivery]:
        with self._lock:
            return list(self._deliveries)

    @property
    def received(self) -> int:
        with self._lock:
            return len(self._deliveries)

    def counts(self) -> Counter[str]:
        """Message-ID -> how many times it was accepted."""
        return Counter(d.message_id for d in self.deliveries)

    def connections(self, mode: RelayMode | None = None) -> int:
        """Connections accepted (all, or in one mode): how hard clients knocked."""
        with self._lock:
            return sum(self._connections.values()) if mode is None else self._connections[mode]

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=30)

    # -- the loop's side -------------------------------------------------------------------

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(
            self._accept, self.host, self.port, reuse_address=True, limit=MAX_LINE
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        await self._close_sessions()

    async def _close_sessions(self) -> None:
        sessions = list(self._sessions)
        self._sessions.clear()
        for session in sessions:
            session.close()
        # Let the handlers end before the caller goes on (or the loop stops).
        tasks = [s.task for s in sessions if s.task is not None]
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _set(self, mode: RelayMode) -> None:
        if mode is self.mode:
            return
        self.mode = mode
        await self._close_sessions()
        if mode is RelayMode.REFUSE and self._server is not None:
            # Not awaiting wait_closed(): it waits for the open connections to end.
            self._server.close()
            self._server = None
        elif mode is not RelayMode.REFUSE and self._server is None:
            await self._listen()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        mode = self.mode
        with self._lock:
            self._connections[mode] += 1
        self._numbered += 1
        session = _Session(self._numbered, writer)
        session.task = asyncio.current_task()
        self._sessions.add(session)
        try:
            if mode is RelayMode.GREET_421:
                writer.write(b"421 4.3.2 Service not available, closing transmission channel\r\n")
                await writer.drain()
            elif mode is RelayMode.HANG:
                await asyncio.Event().wait()  # until the mode changes or the relay stops
            elif mode is RelayMode.ACCEPT:
                await self._converse(session, reader, writer)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            pass
        except asyncio.CancelledError:
            pass  # closed by a mode change or stop()
        finally:
            self._sessions.discard(session)
            writer.close()

    async def _converse(
        self, session: _Session, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        writer.write(b"220 chaos-relay ESMTP\r\n")
        mail_from = ""
        recipients: list[str] = []
        while True:
            line = await reader.readuntil(b"\n")
            command = line.rstrip(b"\r\n").decode("utf-8", errors="replace")
            verb = command[:4].upper()
            if verb in {"EHLO", "HELO"}:
                # PIPELINING: the commands that come together are answered one by one, in order.
                writer.write(
                    b"250-chaos-relay\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n"
                )
            elif verb == "MAIL":
                mail_from, recipients = _address(command), []
                writer.write(b"250 2.1.0 OK\r\n")
            elif verb == "RCPT":
                recipients.append(_address(command))
                if self.rcpt_delay_s:
                    await asyncio.sleep(self.rcpt_delay_s)
                writer.write(b"250 2.1.5 OK\r\n")
            elif verb == "DATA":
                data_began = time.time()
                writer.write(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                await writer.drain()
                data = await _read_data(reader)
                if self.delay_s:
                    await asyncio.sleep(self.delay_s)
                # Recorded and answered with no await in between: a session closed from now
                # on still delivers this reply (graceful close), one closed before never had it.
                self._record(session, mail_from, recipients, data, data_began)
                writer.write(b"250 2.0.0 queued\r\n")
                mail_from, recipients = "", []
            elif verb == "RSET":
                mail_from, recipients = "", []
                writer.write(b"250 2.0.0 OK\r\n")
            elif verb == "NOOP":
                writer.write(b"250 2.0.0 OK\r\n")
            elif verb == "QUIT":
                writer.write(b"221 2.0.0 Bye\r\n")
                await writer.drain()
                return
            else:
                writer.write(b"502 5.5.2 command not recognised\r\n")
            await writer.drain()

    def _record(
        self,
        session: _Session,
        mail_from: str,
        recipients: list[str],
        data: bytes,
        data_began: float,
    ) -> None:
        match = _MESSAGE_ID.search(data)
        delivery = Delivery(
            message_id=match.group(1).decode() if match else "",
            mail_from=mail_from,
            recipients=tuple(recipients),
            session=session.number,
            data_began=data_began,
            accepted_at=time.time(),
            size=len(data),
        )
        with self._lock:
            self._deliveries.append(delivery)


def _address(command: str) -> str:
    start, end = command.find("<"), command.find(">")
    return command[start + 1 : end] if 0 <= start < end else ""


async def _read_data(reader: asyncio.StreamReader) -> bytes:
    lines: list[bytes] = []
    while True:
        line = await reader.readuntil(b"\n")
        if line in (b".\r\n", b".\n"):
            return b"".join(lines)
        if line.startswith(b".."):
            line = line[1:]  # dot-stuffing (RFC 5321 §4.5.2)
        lines.append(line)
