"""An SMTP connection whose commands are pipelined (RFC 2920): several written at once, their
replies read back in order.

aiosmtplib opens the connection (greeting, EHLO, STARTTLS, AUTH) and sends through servers
that do not offer PIPELINING; it has no pipelining of its own (it waits for each reply
before the next command), and its reply reader keeps only one reply at a time. Once a
server has offered PIPELINING, the connection is taken over here: the transport's protocol
becomes a reader that queues every reply as it arrives, so that MAIL, each RCPT and DATA go
out in one write and the message in a second (two round trips per email instead of four).
What the replies mean stays with the sender (mailq.delivery.smtp).
"""

from __future__ import annotations

import asyncio
import re
from collections import deque
from dataclasses import dataclass

import aiosmtplib

# A reply longer than this (all its lines) is not an SMTP reply: the connection is dropped.
MAX_REPLY_BYTES = 32 * 1024
# Lone CR or LF become CRLF; a line that begins with a period gets another (RFC 5321 §4.5.2).
_LINE_ENDINGS = re.compile(rb"\r\n|\n|\r(?!\n)")
_LEADING_PERIOD = re.compile(rb"(?m)^\.")


@dataclass(frozen=True, slots=True)
class Reply:
    code: int
    text: str


class ConnectionDropped(ConnectionError):
    """The server closed the connection (or sent what is not a reply) before answering."""


def content_for_data(message: bytes) -> bytes:
    """The message as it goes after DATA's 354: CRLF line endings, leading periods doubled,
    ended by the lone period."""
    message = _LINE_ENDINGS.sub(b"\r\n", message)
    if not message.endswith(b"\r\n"):
        message += b"\r\n"
    return _LEADING_PERIOD.sub(b"..", message) + b".\r\n"


class _ReplyReader(asyncio.Protocol):
    """Every reply the server sends, queued in order; one waiter for the next."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._replies: deque[Reply] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._failure: ConnectionDropped | None = None

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        try:
            while (reply := self._parse()) is not None:
                self._replies.append(reply)
        except ValueError as exc:
            self._fail(ConnectionDropped(f"the SMTP server sent what is not a reply: {exc}"))
            return
        if len(self._buffer) > MAX_REPLY_BYTES:
            self._fail(ConnectionDropped("the SMTP server sent a reply too long"))
            return
        self._wake()

    def eof_received(self) -> bool:
        self._fail(ConnectionDropped("the SMTP server closed the connection"))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(ConnectionDropped(f"the SMTP connection was lost: {exc or 'closed'}"))

    def _parse(self) -> Reply | None:
        """The first complete reply in the buffer, taken off it; None when none is complete.
        A multiline reply ("250-…" lines, then "250 …") is one reply, its lines joined."""
        lines: list[bytes] = []
        offset = 0
        buffer = self._buffer
        while (end := buffer.find(b"\n", offset)) != -1:
            line = bytes(buffer[offset : end + 1])
            offset = end + 1
            if (
                len(line) < 4
                or not line[:3].isdigit()
                or line[3:4] not in (b" ", b"-", b"\r", b"\n")
            ):
                raise ValueError(line[:40].decode("ascii", "replace").strip())
            lines.append(line[4:].strip(b" \t\r\n"))
            if line[3:4] != b"-":
                del buffer[:offset]
                text = b"\n".join(lines).decode("utf-8", "surrogateescape")
                return Reply(int(line[:3]), text)
        return None

    def _fail(self, failure: ConnectionDropped) -> None:
        if self._failure is None:
            self._failure = failure
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    @property
    def has_reply(self) -> bool:
        return bool(self._replies)

    async def wait(self) -> None:
        """Until a reply is there; ConnectionDropped when the connection ends first."""
        while not self._replies:
            if self._failure is not None:
                raise self._failure
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter

    def pop(self) -> Reply:
        return self._replies.popleft()


class PipelinedConnection:
    """A connection taken over from aiosmtplib after the server offered PIPELINING."""

    def __init__(self, transport: asyncio.Transport, *, smtputf8: bool) -> None:
        self._transport = transport
        self._reader = _ReplyReader()
        transport.set_protocol(self._reader)
        # What the server's EHLO offered, besides PIPELINING.
        self.smtputf8 = smtputf8

    @classmethod
    def take_over(cls, client: aiosmtplib.SMTP) -> PipelinedConnection | None:
        """The client's connection, pipelined, if its server offered PIPELINING in EHLO (None:
        keep using the client). The client must not be used afterwards."""
        transport = client.transport
        if not client.supports_extension("pipelining") or not isinstance(
            transport, asyncio.Transport
        ):
            return None
        if transport.is_closing():
            return None
        return cls(transport, smtputf8=client.supports_extension("smtputf8"))

    @property
    def is_connected(self) -> bool:
        return not self._transport.is_closing()

    def write(self, data: bytes) -> None:
        if self._transport.is_closing():
            raise ConnectionDropped("the SMTP connection is closed")
        self._transport.write(data)

    async def reply(self, timeout: float) -> Reply:
        """The next reply, in the order the commands were written; TimeoutError after
        `timeout` seconds, ConnectionDropped when the connection ends first or the server
        sends what is not a reply. Either closes the connection (a late reply would answer
        the wrong command)."""
        reader = self._reader
        if not reader.has_reply:  # replies to pipelined commands mostly come together
            try:
                async with asyncio.timeout(timeout):
                    await reader.wait()
            except (TimeoutError, ConnectionDropped):
                self.close()
                raise
        reply = reader.pop()
        if reply.code == 421:
            self.close()  # the server is closing the connection (RFC 5321 §3.8)
        return reply

    async def reset(self, timeout: float) -> bool:
        """RSET after a refused transaction; whether the connection can be used again."""
        try:
            self.write(b"RSET\r\n")
            ok = (await self.reply(timeout)).code == 250
        except (ConnectionDropped, TimeoutError):
            return False
        if not ok:
            self.close()
        return ok and self.is_connected

    async def quit(self, timeout: float) -> None:
        try:
            self.write(b"QUIT\r\n")
            await self.reply(timeout)
        except (ConnectionDropped, TimeoutError):
            pass
        self.close()

    def close(self) -> None:
        if not self._transport.is_closing():
            self._transport.close()
