"""The private Postfix of tests/support/postfix.py is a real MTA: STARTTLS verified against its
own CA, AUTH through Dovecot, SMTPUTF8, IDN domains, and what it delivers is what was sent."""

from __future__ import annotations

import email
import os
import socket
import ssl
import tempfile
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest

from mailq.compose.message import build_message
from mailq.delivery.backends import sender_from_url
from mailq.models import ClaimedEmail
from tests.support import postfix
from tests.support.postfix import PostfixMta, delivered_original


def needs_auth(mta: PostfixMta) -> None:
    if not mta.auth:
        pytest.skip("dovecot is not installed: no SMTP AUTH (apt-get install dovecot-core)")


async def connect(mta: PostfixMta, *, login: bool = True) -> aiosmtplib.SMTP:
    """A client that did STARTTLS (the certificate verified against the MTA's CA only) and,
    where AUTH is built and `login`, logged in."""
    client = aiosmtplib.SMTP(
        hostname=mta.host, port=mta.port, start_tls=True, cert_bundle=str(mta.cafile)
    )
    await client.connect()
    if client.is_ehlo_or_helo_needed:
        await client.ehlo()  # the extensions offered over TLS (STARTTLS resets them)
    if login and mta.auth:
        assert mta.username is not None and mta.password is not None
        await client.login(mta.username, mta.password)
    return client


@pytest.fixture
async def client(postfix_mta: PostfixMta) -> AsyncIterator[aiosmtplib.SMTP]:
    smtp = await connect(postfix_mta)
    try:
        yield smtp
    finally:
        await smtp.quit()


def letter(sender: str | Address, to: str | Address, subject: str, body: str) -> EmailMessage:
    message = EmailMessage(policy=policy.SMTP)
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = email.utils.format_datetime(datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC))
    message["Message-ID"] = "<harness-1@example.com>"
    message.set_content(body)
    return message


def header(raw: bytes, name: str) -> str:
    parsed: Any = email.message_from_bytes(raw, policy=policy.default)
    return str(parsed[name])


async def test_a_message_over_starttls_and_auth_arrives_byte_for_byte(
    postfix_mta: PostfixMta, client: aiosmtplib.SMTP
) -> None:
    needs_auth(postfix_mta)
    body = (
        "Hello Ann,\n"
        ".a line that starts with a dot (SMTP dot-stuffing)\n"
        "trailing spaces   \n" + "x" * 200 + "\n\n-- \nthe sender\n"
    )
    raw = letter("app@example.com", "ann@example.com", "A plain letter", body).as_bytes()

    await client.sendmail("bounce@example.com", ["ann@example.com"], raw)

    [delivered] = await postfix_mta.wait_for(1)
    assert delivered_original(delivered) == raw
    assert header(delivered, "Return-Path") == "<bounce@example.com>"
    assert header(delivered, "Delivered-To") == "ann@example.com"
    received = header(delivered, "Received")
    assert "using TLSv1." in received  # the message came over STARTTLS
    assert "with ESMTPSA" in received  # ... and the client was authenticated


async def test_the_certificate_verifies_against_the_cafile_only(
    postfix_mta: PostfixMta,
) -> None:
    untrusting = aiosmtplib.SMTP(hostname=postfix_mta.host, port=postfix_mta.port, start_tls=True)
    with pytest.raises(ssl.SSLCertVerificationError, match="unable to get local issuer"):
        await untrusting.connect()
    untrusting.close()

    trusting = await connect(postfix_mta, login=False)
    try:
        assert trusting.get_transport_info("sslcontext") is not None
        peer = trusting.get_transport_info("peercert")
        assert ("IP Address", "127.0.0.1") in peer["subjectAltName"]
    finally:
        await trusting.quit()


async def test_auth_is_offered_only_after_starttls(postfix_mta: PostfixMta) -> None:
    needs_auth(postfix_mta)
    smtp = aiosmtplib.SMTP(hostname=postfix_mta.host, port=postfix_mta.port, start_tls=False)
    await smtp.connect()
    try:
        await smtp.ehlo()
        assert smtp.supports_extension("starttls")
        assert not smtp.supports_extension("auth")
        await smtp.starttls(cert_bundle=str(postfix_mta.cafile))
        await smtp.ehlo()
        assert {"plain", "login"} <= set(smtp.server_auth_methods)
    finally:
        await smtp.quit()


async def test_a_wrong_password_is_refused(postfix_mta: PostfixMta) -> None:
    needs_auth(postfix_mta)
    assert postfix_mta.username is not None
    smtp = await connect(postfix_mta, login=False)
    try:
        # One mechanism per try (login() would try each): Dovecot answers a failure late.
        with pytest.raises(aiosmtplib.SMTPAuthenticationError) as refused:
            await smtp.auth_plain(postfix_mta.username, "not-the-password")
        assert refused.value.code == 535
        with pytest.raises(aiosmtplib.SMTPAuthenticationError):
            await smtp.auth_plain("nobody", postfix_mta.password or "")
        with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as unauthenticated:
            await smtp.sendmail("app@example.com", ["ann@example.com"], b"Subject: x\r\n\r\n-")
        [refusal] = unauthenticated.value.recipients
        assert (refusal.code, "Authentication required" in refusal.message) == (530, True)
    finally:
        await smtp.quit()


async def test_a_non_ascii_display_name_arrives_rfc2047_encoded(
    postfix_mta: PostfixMta, client: aiosmtplib.SMTP
) -> None:
    sender = Address("Jürgen Müller", "juergen", "example.com")
    to = Address("Doe, Jane", "jane", "example.test")
    raw = letter(sender, to, "Grüße aus Köln", "Hallo Jane,\nbis bald.\n").as_bytes()
    assert raw.isascii()  # the name went on the wire as an encoded-word
    assert b"=?utf-8?" in raw

    await client.sendmail("juergen@example.com", ["jane@example.test"], raw)

    [delivered] = await postfix_mta.wait_for(1)
    assert delivered_original(delivered) == raw
    parsed: Any = email.message_from_bytes(delivered, policy=policy.default)
    assert parsed["From"].addresses[0].display_name == "Jürgen Müller"
    assert parsed["To"].addresses[0].display_name == "Doe, Jane"
    assert parsed["Subject"] == "Grüße aus Köln"


async def test_an_smtputf8_message_arrives(
    postfix_mta: PostfixMta, client: aiosmtplib.SMTP
) -> None:
    assert client.supports_extension("smtputf8")
    message = letter("zoë@example.com", "jürgen@example.test", "Grüße", "Schöne Grüße, Zoë\n")
    raw = message.as_bytes(policy=policy.SMTPUTF8)
    assert "zoë@example.com".encode() in raw  # UTF-8 in the headers, not encoded-words

    await client.sendmail(
        "zoë@example.com", ["jürgen@example.test"], raw, mail_options=["SMTPUTF8"]
    )

    [delivered] = await postfix_mta.wait_for(1)
    assert delivered_original(delivered) == raw
    assert header(delivered, "Delivered-To") == "jürgen@example.test"
    assert "with UTF8SMTPS" in header(delivered, "Received")  # SMTPUTF8 over TLS


@pytest.mark.parametrize(
    ("recipient", "options"),
    [("anna@xn--bcher-kva.example", []), ("anna@bücher.example", ["SMTPUTF8"])],
    ids=["a-label", "u-label-with-smtputf8"],
)
async def test_mail_to_an_idn_domain_arrives(
    postfix_mta: PostfixMta, client: aiosmtplib.SMTP, recipient: str, options: list[str]
) -> None:
    raw = letter("app@example.com", recipient, "IDN", "to a bookshop\n").as_bytes(
        policy=policy.SMTPUTF8
    )

    await client.sendmail("app@example.com", [recipient], raw, mail_options=options)

    [delivered] = await postfix_mta.wait_for(1)
    assert delivered_original(delivered) == raw
    assert header(delivered, "Delivered-To") == recipient


async def test_the_mta_never_relays_and_refuses_reject_recipients(
    postfix_mta: PostfixMta, client: aiosmtplib.SMTP
) -> None:
    raw = letter("app@example.com", "x@example.org", "nowhere", "-\n").as_bytes()
    for recipient, code, reason in [
        ("someone@example.org", 554, "Relay access denied"),
        ("reject-me@example.com", 550, "no such user here"),
    ]:
        with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as refused:
            await client.sendmail("app@example.com", [recipient], raw)
        [refusal] = refused.value.recipients
        assert (refusal.code, reason in refusal.message) == (code, True)
    assert postfix_mta.queued() == 0


async def test_mailqs_smtp_backend_delivers_through_the_url(postfix_mta: PostfixMta) -> None:
    claimed = ClaimedEmail(
        id=1,
        kind="welcome",
        priority=0,
        attempt=1,
        max_attempts=3,
        to="ann@example.com",
        message_id="<backend-1@example.com>",
        content={"from": "app@example.com", "subject": "Hi", "text": "Hello"},
        claimed_at=datetime.now(UTC),
    )
    outgoing = build_message(claimed)
    sender = sender_from_url(postfix_mta.url())
    try:
        receipt = await sender.send(outgoing)
    finally:
        await sender.close()

    assert receipt.smtp_code == 250
    [delivered] = await postfix_mta.wait_for(1)
    # DATA ends in CRLF "." CRLF: a message without a final CRLF gets one on the wire.
    expected = outgoing.data if outgoing.data.endswith(b"\r\n") else outgoing.data + b"\r\n"
    assert delivered_original(delivered) == expected
    assert "with ESMTPS" in header(delivered, "Received")


def needs_postfix() -> None:
    reason = postfix.missing()
    if reason is not None:
        pytest.skip(reason)


def test_a_failed_start_leaves_nothing_behind(monkeypatch: pytest.MonkeyPatch) -> None:
    needs_postfix()
    folders: list[Path] = []
    made = tempfile.mkdtemp

    def recorded(**options: Any) -> str:
        folders.append(Path(made(**options)))
        return str(folders[-1])

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        monkeypatch.setattr(tempfile, "mkdtemp", recorded)
        monkeypatch.setattr(postfix, "free_port", lambda: taken.getsockname()[1])
        with (
            pytest.raises(postfix.MtaUnavailable, match="Address already in use"),
            postfix.private_postfix(),
        ):
            pass  # pragma: no cover - the port is taken

    [folder] = folders
    assert not folder.exists()
    assert processes_in(folder) == []


def test_a_stopped_mta_is_gone() -> None:
    needs_postfix()
    with postfix.private_postfix() as mta:
        with socket.create_connection((mta.host, mta.port), timeout=5) as sock:
            assert sock.recv(512).startswith(b"220 ")
        assert processes_in(mta.folder) != []
    assert not mta.folder.exists()
    assert processes_in(mta.folder) == []
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((mta.host, mta.port), timeout=5).close()


def processes_in(folder: Path) -> list[int]:
    """The live processes that work in `folder` (Postfix's run in its queue directory) or
    name it on their command line (Dovecot's master)."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue
            cwd = os.readlink(proc / "cwd")
            cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
        except (OSError, IndexError):
            continue  # gone meanwhile, or not ours to read
        if cwd.startswith(str(folder)) or str(folder) in cmdline:
            found.append(int(proc.name))
    return found
