"""The SMTP backend against real servers: TLS modes, auth, timeouts, connection reuse."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mailq.compose.message import OutgoingMessage, build_message
from mailq.delivery.backends import sender_from_url
from mailq.delivery.smtp import SmtpSender, SmtpTarget
from mailq.errors import BackendError, BackendUnavailable, PermanentFailure
from mailq.models import ClaimedEmail
from tests.support.smtp import SmtpSink, free_port


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def server_tls(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    return context


def message(n: int = 1, to: str = "ann@example.com") -> OutgoingMessage:
    return build_message(
        ClaimedEmail(
            id=n,
            kind="welcome",
            priority=0,
            attempt=1,
            max_attempts=3,
            to=to,
            message_id=f"<{n}@example.com>",
            content={"from": "app@example.com", "subject": "Hi", "text": "Hello"},
            claimed_at=datetime.now(UTC),
        )
    )


class Sinks(list[SmtpSink]):
    """The sinks a test started; each offers PIPELINING or not, as the test runs."""

    def __init__(self, pipelining: bool) -> None:
        super().__init__()
        self.pipelining = pipelining


@pytest.fixture(params=[True, False], ids=["pipelined", "one-command-at-a-time"])
def sinks(request: pytest.FixtureRequest) -> Iterator[Sinks]:
    """Every test runs against a server that offers PIPELINING and one that does not (the
    sender then pipelines its commands or sends them one at a time)."""
    started = Sinks(pipelining=request.param)
    yield started
    for sink in started:
        sink.stop()


def start(sinks: Sinks, **options: object) -> SmtpSink:
    sink = SmtpSink(pipelining=sinks.pipelining, **options)  # type: ignore[arg-type]
    sink.start()
    sinks.append(sink)
    return sink


async def test_starttls_with_auth_from_the_url(
    sinks: Sinks, certificate: tuple[Path, Path]
) -> None:
    sink = start(
        sinks, tls=server_tls(certificate), require_starttls=True, credentials=("bob", "s3cr:t")
    )
    url = f"smtp://bob:s3cr%3At@127.0.0.1:{sink.port}?tls=starttls&cafile={certificate[0]}"
    sender = sender_from_url(url)
    try:
        receipt = await sender.send(message())
    finally:
        await sender.close()
    assert receipt.smtp_code == 250
    assert len(sink.received) == 1


async def test_wrong_credentials_make_the_backend_unavailable_so_mail_goes_out_once_fixed(
    sinks: Sinks, certificate: tuple[Path, Path]
) -> None:
    sink = start(sinks, tls=server_tls(certificate), credentials=("bob", "right"))
    sender = sender_from_url(
        f"smtp://bob:wrong@127.0.0.1:{sink.port}?tls=starttls&cafile={certificate[0]}"
    )
    try:
        with pytest.raises(BackendUnavailable, match="authentication failed"):
            await sender.send(message())
    finally:
        await sender.close()
    assert sink.received == []


async def test_implicit_tls_with_smtps(sinks: Sinks, certificate: tuple[Path, Path]) -> None:
    sink = start(sinks, tls=server_tls(certificate), implicit_tls=True)
    sender = sender_from_url(f"smtps://127.0.0.1:{sink.port}?cafile={certificate[0]}")
    try:
        await sender.send(message())
    finally:
        await sender.close()
    assert len(sink.received) == 1


async def test_starttls_required_but_not_offered_makes_the_backend_unavailable(
    sinks: Sinks,
) -> None:
    sink = start(sinks)
    sender = sender_from_url(f"smtp://127.0.0.1:{sink.port}?tls=starttls")
    try:
        with pytest.raises(BackendUnavailable, match=r"(?i)starttls"):
            await sender.send(message())
    finally:
        await sender.close()
    assert sink.received == []


async def test_an_untrusted_certificate_is_refused(
    sinks: Sinks, certificate: tuple[Path, Path]
) -> None:
    sink = start(sinks, tls=server_tls(certificate), implicit_tls=True)
    sender = sender_from_url(f"smtps://127.0.0.1:{sink.port}")
    try:
        with pytest.raises(BackendUnavailable):
            await sender.send(message())
    finally:
        await sender.close()


@pytest.fixture
async def silent_server() -> AsyncIterator[int]:
    """Accepts connections and never says a word."""
    port = free_port()
    held: list[asyncio.StreamWriter] = []

    async def hold(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", port)
    try:
        yield port
    finally:
        for writer in held:
            writer.close()
        server.close()


async def test_a_server_that_never_replies_makes_the_backend_unavailable(
    silent_server: int,
) -> None:
    sender = SmtpSender(
        SmtpTarget.from_url(f"smtp://127.0.0.1:{silent_server}?tls=none"),
        connect_timeout_s=0.5,
        reply_timeout_s=0.5,
    )
    try:
        with pytest.raises(BackendUnavailable):
            await asyncio.wait_for(sender.send(message()), timeout=10)
    finally:
        await sender.close()


async def test_connections_are_kept_open_and_reused(sinks: Sinks) -> None:
    sink = start(sinks)
    sender = sender_from_url(sink.url, connections=3)
    try:
        await asyncio.gather(*(sender.send(message(n)) for n in range(60)))
        with pytest.raises(PermanentFailure, match="550"):
            await sender.send(message(62, to="reject-x@example.com"))
        await sender.send(message(63))
    finally:
        await sender.close()
    assert len(sink.received) == 61
    assert sink.sessions <= 3, "a refused recipient does not cost a new connection"


async def test_connections_in_the_url_cap_what_a_worker_keeps_open(
    sinks: Sinks,
) -> None:
    # 16 send slots, 2 connections: the sends queue for the two and all go out on them.
    sink = start(sinks)
    sender = sender_from_url(f"{sink.url}&connections=2", connections=16)
    try:
        await asyncio.gather(*(sender.send(message(n)) for n in range(40)))
    finally:
        await sender.close()
    assert len(sink.received) == 40
    assert sink.sessions <= 2
    # More connections than slots: the slots are the limit (a send holds one at a time).
    assert SmtpTarget.from_url("smtp://h:25?connections=50").connections == 50


@pytest.mark.parametrize(
    "url",
    [
        "smtp://127.0.0.1:25?tls=maybe",
        "smtps://h:465?tls=none",
        "smtp://:25",
        "ftp://x",
        "file://",
        "smtp://h:25?connections=0",
        "smtp://h:25?connections=many",
        "smtp://h:25?connections=1001",
        "smtp://h:25?pipelining=sometimes",
    ],
)
def test_malformed_backend_urls_are_refused(url: str) -> None:
    with pytest.raises(BackendError):
        sender_from_url(url)
