"""Through a real MTA with STARTTLS and SMTP AUTH: emails with display names, IDN domains,
attachments and inline images, DKIM-signed, arrive intact and still verify. Run against
aiosmtpd (STARTTLS + AUTH) and, where the machine can run one, a private Postfix with Dovecot
SASL (tests/support/postfix.py). Also: the EHLO name, A-labels to a server without SMTPUTF8,
and a non-ASCII local part that such a server cannot take."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from mailq import Attachment, enqueue
from mailq.campaigns import NewCampaign, Recipient, create_campaign
from mailq.config import Config, DkimKey
from mailq.delivery.backends import sender_from_url
from mailq.settings import Settings
from mailq.worker.worker import Worker
from tests.support import postfix
from tests.support.emails import welcome
from tests.support.messages import DkimKeys, header_text, make_dkim_keys, strict_parse
from tests.support.smtp import SmtpSink

HELO = "sender.mailq.example"
PDF = b"%PDF-1.4\n" + bytes(range(256)) * 4
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(255, -1, -1)) * 3
NOTES = "naïve café, 日本語\n"


@dataclass
class Mta:
    """One server to deliver to: its backend URL and what it received (as the client sent
    it), with a way to tell which name the client gave in EHLO."""

    url: str
    received: Callable[[int], Awaitable[list[bytes]]]
    helo_names: Callable[[], list[str]]


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


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> DkimKeys:
    return make_dkim_keys(tmp_path_factory.mktemp("dkim"))


@pytest.fixture(params=["aiosmtpd", "postfix"])
def mta(request: pytest.FixtureRequest, certificate: tuple[Path, Path]) -> Iterator[Mta]:
    if request.param == "postfix":
        server: postfix.PostfixMta = request.getfixturevalue("postfix_mta")
        if not server.auth:
            pytest.skip("Dovecot is not installed: no SMTP AUTH for the private Postfix")

        async def delivered(count: int) -> list[bytes]:
            raw = await server.wait_for(count, timeout=20)
            return [postfix.delivered_original(m) for m in raw]

        def names() -> list[str]:
            # Postfix writes the client's EHLO name into its Received header.
            return [m.split(b"Received: from ", 1)[1].split(b" ", 1)[0].decode()
                    for m in server.messages()]  # fmt: skip

        yield Mta(server.url(), delivered, names)
        return
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    sink = SmtpSink(
        tls=context, require_starttls=True, credentials=("bob", "s3cr:t"), smtputf8=True
    )
    sink.start()
    try:
        url = f"smtp://bob:s3cr%3At@127.0.0.1:{sink.port}?tls=starttls&cafile={certificate[0]}"

        async def arrived(count: int) -> list[bytes]:
            return [r.data for r in await asyncio.to_thread(sink.wait_for, count, 20)]

        yield Mta(url, arrived, lambda: sink.helo_names)
    finally:
        sink.stop()


def worker(database_url: str, url: str, tmp_path: Path, keys: DkimKeys | None = None) -> Worker:
    settings = Settings(
        database_url=database_url,
        home=tmp_path,
        secret_key="k",
        public_url="https://mail.example.com",
        helo_name=HELO,
        lease_s=10,
    )
    dkim = DkimKey(keys.domain, keys.selector, keys.private) if keys else None
    config = Config(dkim=dkim, feedback_sender_id="mailqtest")
    sender = sender_from_url(url, helo_name=settings.helo_name, connections=2)
    return Worker(settings, sender, config=config)


async def drain(conn: asyncpg.Connection, worker: Worker) -> dict[int, tuple[str, Any]]:
    await asyncio.wait_for(worker.run(until_empty=True), timeout=60)
    rows = await conn.fetch("SELECT id, status, last_error FROM mailq.emails ORDER BY id")
    return {r["id"]: (r["status"], r["last_error"]) for r in rows}


def by_subject(messages: list[bytes]) -> dict[str, Any]:
    parsed = {}
    for data in messages:
        message = strict_parse(data)
        parsed[header_text(data, "Subject")] = (message, data)
    return parsed


async def test_names_idn_attachments_and_inline_images_arrive_intact_and_verify(
    database_url: str, conn: asyncpg.Connection, mta: Mta, keys: DkimKeys, tmp_path: Path
) -> None:
    acme = "Acme Café <hello@example.com>"
    await enqueue(
        conn,
        welcome(
            1,
            to="Jörg Müller <joerg@example.com>",
            subject="Grüße, {{ name }}",
            from_address=acme,
            cc=['"Doe, Jane" <jane@example.test>'],
            reply_to=['"Support, Acme" <help@example.com>'],
            html='<p>Hallo {{ name }} <img src="cid:logo@acme" alt="Acme"></p>',
            attachments=[
                Attachment("logo.png", "image/png", PNG, content_id="logo@acme"),
                Attachment("Rechnung März.pdf", "application/pdf", PDF),
                Attachment("notes.txt", "text/plain", NOTES.encode()),
            ],
        ),
        welcome(2, to="Ann <ann@bücher.example>", subject="IDN", from_address=acme),
    )
    await create_campaign(
        conn,
        NewCampaign("Spring, 2030", "search_engine", datetime.now(UTC), from_address=acme,
                    subject="Campaign {{ name }}", text="Hi {{ name }}"),
        [Recipient("山田太郎 <taro@example.com>", {"name": "Taro"})],
    )  # fmt: skip
    outcome = await drain(conn, worker(database_url, mta.url, tmp_path, keys))
    assert {state for state, _ in outcome.values()} == {"sent"}, outcome
    received = by_subject(await mta.received(3))
    assert set(received) == {"Grüße, user 1", "IDN", "Campaign Taro"}
    assert mta.helo_names() and set(mta.helo_names()) == {HELO}, mta.helo_names()

    for _message, data in received.values():
        assert keys.verifies(data), "the DKIM signature no longer verifies"
        assert data.isascii(), "no SMTPUTF8 was needed: the message must be ASCII"

    first, data = received["Grüße, user 1"]
    assert [(a.display_name, a.addr_spec) for a in first["To"].addresses] == [
        ("Jörg Müller", "joerg@example.com")
    ]
    assert first["From"].addresses[0].display_name == "Acme Café"
    assert first["Cc"].addresses[0].display_name == "Doe, Jane"
    assert first["Reply-To"].addresses[0].display_name == "Support, Acme"
    assert first["Date"].datetime.utcoffset().total_seconds() == 0
    html = first.get_body(("html",))
    assert 'src="cid:logo@acme"' in html.get_content()
    related = next(p for p in first.walk() if p.get_content_type() == "multipart/related")
    image = list(related.iter_parts())[1]
    assert image["Content-ID"] == "<logo@acme>" and image.get_content() == PNG
    files = {p.get_filename(): p for p in first.iter_attachments()}
    assert files["Rechnung März.pdf"].get_content() == PDF
    assert files["notes.txt"].get_content() == NOTES
    assert files["notes.txt"].get_content_charset() == "utf-8"

    idn, _ = received["IDN"]
    assert idn["To"].addresses[0].domain == "xn--bcher-kva.example"
    assert idn["To"].addresses[0].display_name == "Ann"

    campaign, data = received["Campaign Taro"]
    assert header_text(data, "To") == "山田太郎 <taro@example.com>"
    assert campaign["List-Id"].endswith(".search_engine.example.com>")
    assert campaign["List-Id"].startswith('"Spring, 2030" <')
    assert campaign["Feedback-ID"].endswith(":search_engine:mailqtest")
    assert campaign["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


async def test_a_non_ascii_local_part_goes_raw_to_a_server_with_smtputf8(
    database_url: str, conn: asyncpg.Connection, mta: Mta, keys: DkimKeys, tmp_path: Path
) -> None:
    await enqueue(conn, welcome(1, to="Jörg <jörg@bücher.example>", subject="UTF8"))
    outcome = await drain(conn, worker(database_url, mta.url, tmp_path, keys))
    assert {state for state, _ in outcome.values()} == {"sent"}, outcome
    (data,) = await mta.received(1)
    assert "To: Jörg <jörg@bücher.example>\r\n".encode() in data
    message = strict_parse(data)
    assert message["To"].addresses[0].username == "jörg"
    assert keys.verifies(data)


async def test_to_a_server_without_smtputf8_idn_goes_as_a_labels_and_a_utf8_local_part_fails(
    database_url: str, conn: asyncpg.Connection, smtp_sink: SmtpSink, tmp_path: Path
) -> None:
    """A defect of the issue: IDN domains went as raw UTF-8 even without SMTPUTF8."""
    ids = await enqueue(
        conn,
        welcome(1, to="Ann <ann@bücher.example>", from_address="Bücher <news@bücher.de>"),
        welcome(2, to="jörg@bücher.example"),
    )
    outcome = await drain(conn, worker(database_url, smtp_sink.url, tmp_path))
    assert outcome[ids[0]] == ("sent", None)
    state, error = outcome[ids[1]]
    assert state == "failed" and "non-ASCII local part" in error and "SMTPUTF8" in error
    (received,) = smtp_sink.received
    assert received.mail_from == "news@xn--bcher-kva.de"
    assert received.recipients == ["ann@xn--bcher-kva.example"]
    assert received.data.isascii()
    assert strict_parse(received.data)["From"].addresses[0].display_name == "Bücher"
    attempts = await conn.fetchval("SELECT attempts FROM mailq.emails WHERE id = $1", ids[1])
    assert attempts == 1  # permanent: not tried again
    assert smtp_sink.helo_names and set(smtp_sink.helo_names) == {HELO}
