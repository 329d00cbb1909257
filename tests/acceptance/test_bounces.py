"""End to end with real processes: a worker sends through a real SMTP server with a VERP
envelope sender; a DSN for that email, delivered over SMTP to a running `mailq bounces serve`
at that VERP address, is recorded against the email and suppresses the address; a DSN to a
forged VERP address is refused at RCPT."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import aiosmtplib
import asyncpg
import pytest

from mailq import enqueue
from tests.support.emails import welcome
from tests.support.processes import REPO, start_worker, stop, worker_env
from tests.support.smtp import SmtpSink, free_port
from tests.support.waiting import eventually

BOUNCE_DOMAIN = "bounces.example.com"
SECRET = "e2e-secret,an-older-key"


def dsn(verp: str, recipient: str, original_headers: str) -> bytes:
    """A Postfix-style RFC 3464 DSN: user unknown, with the original's headers."""
    text = f"""\
From: MAILER-DAEMON@mx.example.net (Mail Delivery System)
To: {verp}
Subject: Undelivered Mail Returned to Sender
Message-ID: <dsn-e2e-1@mx.example.net>
Date: Tue, 01 Dec 2026 12:00:00 +0000
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="BOUNDARY"

--BOUNDARY
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mx.example.net.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients.

<{recipient}>: host mx.example.net said: 550 5.1.1 <{recipient}>:
    Recipient address rejected: User unknown in virtual mailbox table

--BOUNDARY
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net
Arrival-Date: Tue, 01 Dec 2026 11:59:58 +0000

Final-Recipient: rfc822; {recipient}
Original-Recipient: rfc822;{recipient}
Action: failed
Status: 5.1.1
Remote-MTA: dns; mx.example.net
Diagnostic-Code: smtp; 550 5.1.1 <{recipient}>: Recipient address rejected: User
    unknown in virtual mailbox table

--BOUNDARY
Content-Type: text/rfc822-headers

{original_headers}
--BOUNDARY--
"""
    return text.replace("\n", "\r\n").encode()


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.timeout(120)
async def test_a_dsn_to_the_verp_address_the_worker_used_suppresses_the_address(
    database_url: str, conn: asyncpg.Connection, smtp_sink: SmtpSink, tmp_path: Path
) -> None:
    [email_id] = await enqueue(conn, welcome(1, to="Gone Away <gone@example.com>"))
    env = worker_env(
        database_url,
        smtp_sink.url,
        bounce_domain=BOUNCE_DOMAIN,
        secret_key=SECRET,
        home=str(tmp_path / "home"),
        poll_interval="0.2",
    )
    port = free_port()
    log = tmp_path / "bounces.log"
    server = subprocess.Popen(
        [sys.executable, "-m", "mailq.cli", "bounces", "serve", "--listen", f"127.0.0.1:{port}"],
        env=env,
        cwd=REPO,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )
    worker = start_worker(env, log=tmp_path / "worker.log")
    try:
        sent = await eventually(lambda: smtp_sink.received, timeout=30, message="nothing sent")
        verp = sent[0].mail_from
        assert verp.startswith("b-") and verp.endswith(f"@{BOUNCE_DOMAIN}")
        headers = sent[0].data.split(b"\r\n\r\n", 1)[0].decode()
        await eventually(lambda: listening(port), timeout=30, message="bounces serve not up")
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port) as client:
            token = verp[2:].split("@")[0]
            forged = f"b-{token[:-1]}{'0' if token[-1] != '0' else '1'}@{BOUNCE_DOMAIN}"
            with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as refused:
                await client.sendmail("", [forged], dsn(forged, "gone@example.com", headers))
            assert refused.value.recipients[0].code == 550
            with pytest.raises(aiosmtplib.SMTPRecipientsRefused):
                await client.sendmail("", ["someone@example.org"], b"Subject: relay?\r\n\r\nx")
            _, reply = await client.sendmail("", [verp], dsn(verp, "gone@example.com", headers))
            assert reply.startswith("2.0.0")

        async def bounced() -> asyncpg.Record | None:
            return await conn.fetchrow(
                "SELECT type, subtype, status_code, recipient FROM mailq.events "
                "WHERE email_id = $1",
                email_id,
            )

        event = await eventually(bounced, timeout=20, message="bounce not recorded")
        assert tuple(event) == ("bounced", "hard", "5.1.1", "gone@example.com")
        reason = await conn.fetchval(
            "SELECT reason FROM mailq.suppressions WHERE address = 'gone@example.com'"
        )
        assert reason is not None and "hard bounce" in reason
        assert await conn.fetchval("SELECT count(*) FROM mailq.events") == 1  # not the forged
    finally:
        assert stop(worker) == 0
        server.terminate()
        assert server.wait(timeout=30) == 0, log.read_text()
