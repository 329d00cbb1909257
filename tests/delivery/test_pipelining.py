"""SMTP pipelining (RFC 2920): against a server that offers it, MAIL, every RCPT and DATA go out
together and the message after DATA's 354; each reply still means what it means alone, and
a transaction refused after DATA was accepted ends without a message."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field

import pytest

from mailq.compose.message import OutgoingMessage
from mailq.delivery.pipelining import content_for_data
from mailq.delivery.smtp import SmtpSender, SmtpTarget
from mailq.errors import BackendUnavailable, NotSent, PermanentFailure, RetryLater
from tests.support.smtp import SmtpSink
from tests.support.waiting import eventually

MESSAGE_DATA = (
    b"From: app@example.com\r\nTo: ann@example.com\r\nSubject: Hi\r\n"
    b"Message-ID: <1@example.com>\r\n\r\nHello,\r\n.a line that begins with a period\r\n"
    b"..and one with two\r\n"
)


def outgoing(to: str = "ann@example.com", *others: str, n: int = 1) -> OutgoingMessage:
    return OutgoingMessage(
        email_id=n,
        message_id=f"<{n}@example.com>",
        mail_from="app@example.com",
        to=to,
        other_recipients=others,
        data=MESSAGE_DATA.replace(b"<1@example.com>", f"<{n}@example.com>".encode()),
    )


Session = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@dataclass
class ScriptedServer:
    """An SMTP server on loopback that runs `session` for each connection (after its own
    greeting and EHLO reply, which offers PIPELINING), for the exchanges aiosmtpd cannot be
    made to answer."""

    session: Session
    server: asyncio.Server | None = None
    lines: list[bytes] = field(default_factory=list)  # every line the clients sent

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._greet, "127.0.0.1", 0)
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    async def _greet(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(b"220 scripted ESMTP\r\n")
            self.lines.append(await reader.readline())  # EHLO
            writer.write(b"250-scripted\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
            await self.session(reader, writer)
        finally:
            writer.close()

    async def read_line(self, reader: asyncio.StreamReader) -> bytes:
        line = await reader.readline()
        self.lines.append(line)
        return line

    def stop(self) -> None:
        if self.server is not None:
            self.server.close()


@pytest.fixture
async def scripted() -> AsyncIterator[list[ScriptedServer]]:
    servers: list[ScriptedServer] = []
    yield servers
    for server in servers:
        server.stop()


async def sender_to(servers: list[ScriptedServer], session: Session) -> SmtpSender:
    server = ScriptedServer(session)
    servers.append(server)
    port = await server.start()
    return SmtpSender(SmtpTarget.from_url(f"smtp://127.0.0.1:{port}?tls=none"), reply_timeout_s=5)


async def read_content(reader: asyncio.StreamReader) -> bytes:
    lines = []
    while (line := await reader.readline()) not in (b".\r\n", b""):
        lines.append(line)
    return b"".join(lines)


async def test_the_envelope_commands_and_data_go_out_without_waiting_for_replies(
    scripted: list[ScriptedServer],
) -> None:
    server_seen: dict[str, object] = {}

    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        server = scripted[0]
        # Nothing is answered until MAIL, both RCPTs and DATA are in: a client that waited
        # for MAIL's reply would wait for ever (its 5 s reply timeout would fail the send).
        commands = [await server.read_line(reader) for _ in range(4)]
        writer.write(b"250 2.1.0 ok\r\n250 2.1.5 ok\r\n250 2.1.5 ok\r\n354 go ahead\r\n")
        server_seen["commands"] = commands
        server_seen["content"] = await read_content(reader)
        writer.write(b"250 2.0.0 queued as X1\r\n")
        await server.read_line(reader)  # QUIT
        writer.write(b"221 bye\r\n")

    sender = await sender_to(scripted, session)
    receipt = await sender.send(outgoing("ann@example.com", "bob@example.com"))
    await sender.close()

    assert (receipt.smtp_code, receipt.smtp_reply, receipt.refused) == (
        250,
        "2.0.0 queued as X1",
        {},
    )
    assert server_seen["commands"] == [
        b"MAIL FROM:<app@example.com>\r\n",
        b"RCPT TO:<ann@example.com>\r\n",
        b"RCPT TO:<bob@example.com>\r\n",
        b"DATA\r\n",
    ]
    # Lines beginning with a period go out with one more (RFC 5321 §4.5.2).
    assert server_seen["content"] == MESSAGE_DATA.replace(b"\r\n.", b"\r\n..")


async def sent_after_replies(
    scripted: list[ScriptedServer], commands: int, replies: bytes, message: OutgoingMessage
) -> tuple[Exception, bytes]:
    """Send `message` to a server that reads `commands` lines, answers `replies`, then keeps
    what the client writes until the client closes the connection: the send's failure, and
    that (nothing, if the client ended the transaction by closing)."""
    after: list[bytes] = []

    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(commands):
            await scripted[0].read_line(reader)
        writer.write(replies)
        after.append(await reader.read())  # until the client closes

    sender = await sender_to(scripted, session)
    with pytest.raises(Exception) as failure:
        await sender.send(message)
    await eventually(lambda: bool(after), message="the client did not close the connection")
    await sender.close()
    return failure.value, after[0]


async def test_a_refused_to_whose_data_the_server_accepted_ends_the_connection_unsent(
    scripted: list[ScriptedServer],
) -> None:
    # The cc is taken, so DATA is accepted although the `to` was refused.
    failure, sent = await sent_after_replies(
        scripted,
        4,
        b"250 ok\r\n550 5.1.1 no such user\r\n250 ok\r\n354 go ahead\r\n",
        outgoing("gone@example.com", "cc@example.com"),
    )
    assert isinstance(failure, PermanentFailure)
    assert "550 5.1.1 no such user" in str(failure)
    # Not even the lone period: an empty message would have reached the cc.
    assert sent == b""


async def test_a_lease_lost_after_354_sends_nothing_and_the_next_email_opens_a_new_session(
    sinks: list[SmtpSink],
) -> None:
    sink = start(sinks)
    sender = SmtpSender(SmtpTarget.from_url(sink.url))

    async def lease_gone() -> None:
        raise NotSent("taken back by another worker after this worker's lease lapsed")

    with pytest.raises(NotSent):
        await sender.send(outgoing(n=1), before_data=lease_gone)
    receipt = await sender.send(outgoing(n=2))
    await sender.close()

    assert receipt.smtp_code == 250
    assert [r.message_id for r in sink.received] == ["<2@example.com>"]
    assert sink.sessions == 2  # the first was closed in DATA: nothing else can end it


async def test_through_a_real_server_each_reply_means_what_it_means_alone(
    sinks: list[SmtpSink],
) -> None:
    sink = start(sinks)
    sender = SmtpSender(SmtpTarget.from_url(sink.url))

    accepted = await sender.send(outgoing("ann@example.com", "reject-cc@example.com", n=1))
    with pytest.raises(PermanentFailure, match=r"550 5\.1\.1") as refused:
        await sender.send(outgoing("reject-to@example.com", n=2))
    with pytest.raises(RetryLater, match="451"):
        await sender.send(outgoing("tempfail-1-b@example.com", n=3))
    retried = await sender.send(outgoing("tempfail-1-b@example.com", n=3))
    with pytest.raises(PermanentFailure, match="554"):
        await sender.send(outgoing("datafail@example.com", n=4))
    await sender.close()

    assert accepted.refused == {"reject-cc@example.com": "550 5.1.1 no such user here"}
    assert refused.value.suppress  # a "no such user" for the `to`: the address is suppressed
    assert retried.smtp_code == 250
    received = {r.message_id: r for r in sink.received}
    assert sorted(received) == ["<1@example.com>", "<3@example.com>"]
    assert received["<1@example.com>"].recipients == ["ann@example.com"]
    # The message arrives as it was written, its leading periods restored by the server.
    assert received["<1@example.com>"].data == MESSAGE_DATA
    assert sink.sessions == 1  # every refusal left the connection usable (RSET)


async def test_a_kept_connection_the_server_dropped_is_replaced_and_the_email_goes_out(
    scripted: list[ScriptedServer],
) -> None:
    sessions: list[int] = []

    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        server = scripted[0]
        sessions.append(len(sessions) + 1)
        for _ in range(3):
            await server.read_line(reader)
        if len(sessions) == 1:
            writer.write(b"250 ok\r\n250 ok\r\n354 go ahead\r\n")
            await read_content(reader)
            writer.write(b"250 2.0.0 queued as A\r\n")
            for _ in range(3):
                await server.read_line(reader)  # the next email's commands: dropped unanswered
            return
        writer.write(b"250 ok\r\n250 ok\r\n354 go ahead\r\n")
        await read_content(reader)
        writer.write(b"250 2.0.0 queued as B\r\n")
        await server.read_line(reader)  # QUIT
        writer.write(b"221 bye\r\n")

    sender = await sender_to(scripted, session)
    first = await sender.send(outgoing(n=1))
    second = await sender.send(outgoing(n=2))
    await sender.close()

    assert (first.smtp_reply, second.smtp_reply) == ("2.0.0 queued as A", "2.0.0 queued as B")
    assert sessions == [1, 2]


@pytest.mark.parametrize(
    ("replies", "failure"),
    [
        (b"421 4.3.2 going down\r\n", BackendUnavailable),  # to MAIL FROM
        (b"250 ok\r\n421 4.3.2 going down\r\n", RetryLater),  # to the `to`, as alone
        (b"250 ok\r\n250 ok\r\n421 4.3.2 going down\r\n", BackendUnavailable),  # to the cc
    ],
    ids=["mail", "to", "cc"],
)
async def test_a_421_means_the_server_is_going_away_and_nothing_is_sent(
    scripted: list[ScriptedServer], replies: bytes, failure: type[Exception]
) -> None:
    raised, sent = await sent_after_replies(
        scripted, 4, replies, outgoing("ann@example.com", "cc@example.com")
    )
    assert type(raised) is failure
    assert "421" in str(raised)
    assert sent == b""


async def test_what_is_not_a_reply_ends_the_connection_and_nothing_is_sent(
    scripted: list[ScriptedServer],
) -> None:
    raised, sent = await sent_after_replies(scripted, 3, b"hello there\r\n", outgoing())
    assert type(raised) is BackendUnavailable
    assert "not a reply" in str(raised)
    assert sent == b""


async def test_pipelining_off_in_the_url_sends_one_command_at_a_time(
    scripted: list[ScriptedServer],
) -> None:
    """The server above answers nothing until four commands are in: a sender that waits for
    each reply times out there, which `pipelining=off` makes this one do."""

    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(4):
            await scripted[0].read_line(reader)
        writer.write(b"250 ok\r\n250 ok\r\n354 go ahead\r\n")

    server = ScriptedServer(session)
    scripted.append(server)
    port = await server.start()
    url = f"smtp://127.0.0.1:{port}?tls=none&pipelining=off"
    sender = SmtpSender(SmtpTarget.from_url(url), reply_timeout_s=1)
    with pytest.raises(BackendUnavailable, match="before MAIL FROM"):
        await sender.send(outgoing())
    await sender.close()
    assert server.lines[1:] == [b"MAIL FROM:<app@example.com>\r\n"]  # and nothing after it


def test_content_for_data_ends_lines_with_crlf_and_doubles_leading_periods() -> None:
    assert content_for_data(b"a\nb\r.c\r\n.d") == b"a\r\nb\r\n..c\r\n..d\r\n.\r\n"
    assert content_for_data(b"a\r\n") == b"a\r\n.\r\n"


@pytest.fixture
def sinks() -> Iterator[list[SmtpSink]]:
    started: list[SmtpSink] = []
    yield started
    for sink in started:
        sink.stop()


def start(sinks: list[SmtpSink]) -> SmtpSink:
    sink = SmtpSink()
    sink.start()
    sinks.append(sink)
    return sink
