"""What the SMTP server says, and what mailq does with it: quirks, suppression, unsubscribe,
SMTPUTF8, staging, headers on the wire. A real aiosmtpd server, the worker in-process."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest

from mailq import MailqError, Settings, enqueue, suppression
from mailq.campaigns import NewCampaign, Recipient, create_campaign
from mailq.compose.unsubscribe import UnsubscribeLinks, make_token
from mailq.config import Config, load_config
from mailq.delivery.backends import sender_from_url
from mailq.delivery.sender import Sender
from mailq.retry import RetryPolicy
from mailq.suppression import unsubscribe
from mailq.worker.worker import Worker
from tests.support.emails import campaign, welcome
from tests.support.smtp import SmtpSink
from tests.support.waiting import eventually

SECRET = "test-secret"
FAST_RETRY = RetryPolicy(base_s=0.2, cap_s=1.0, jitter=0.0)


def worker_for(
    database_url: str, sender: Sender, config: Config | None = None, **settings: object
) -> Worker:
    base: dict[str, object] = {
        "database_url": database_url,
        "lease_s": 5.0,
        "secret_key": SECRET,
        "public_url": "https://mail.example.com",
    }
    base.update(settings)
    return Worker(
        Settings(**base),  # type: ignore[arg-type]
        sender,
        retry_policy=FAST_RETRY,
        **({"config": config} if config else {}),
    )


async def drain(worker: Worker) -> None:
    await asyncio.wait_for(worker.run(until_empty=True), timeout=30)


async def outcome(conn: asyncpg.Connection, email_id: int) -> tuple[str, str | None]:
    row = await conn.fetchrow(
        "SELECT mailq.email_state(status, run_at, attempts) AS s, last_error FROM mailq.emails "
        "WHERE id = $1",
        email_id,
    )
    return row["s"], row["last_error"]


async def test_provider_quirks_override_the_reply_class(
    database_url: str, conn: asyncpg.Connection, smtp_sink: SmtpSink, tmp_path: Path
) -> None:
    smtp_sink.replies["listed@example.com"] = "451 4.7.1 Recipient on suppression list"
    smtp_sink.replies["full@example.com"] = "552 5.2.2 Mailbox full"
    config_file = tmp_path / "mailq.toml"
    config_file.write_text(
        '[[quirks]]\ncode = 552\nmatch = "mailbox full"\noutcome = "transient"\n'
    )
    config = load_config(config_file)
    listed, full = await enqueue(
        conn,
        welcome(1, to="listed@example.com"),
        welcome(2, to="full@example.com", max_attempts=2),
    )
    sender = sender_from_url(smtp_sink.url, quirks=config.quirks)
    worker = worker_for(database_url, sender, config, poll_interval_s=0.2)
    task = asyncio.create_task(worker.run())

    async def both_failed() -> bool:
        return {(await outcome(conn, i))[0] for i in (listed, full)} == {"failed"}

    await eventually(both_failed, timeout=20, message="the emails did not fail")
    worker.stop()
    await asyncio.wait_for(task, timeout=30)
    listed_attempts = await conn.fetchval(
        "SELECT count(*) FROM mailq.attempts WHERE email_id = $1", listed
    )
    assert listed_attempts == 1  # a 4xx that never succeeds is not retried
    attempts = await conn.fetch(
        "SELECT outcome, smtp_code, smtp_reply FROM mailq.attempts WHERE email_id = $1 "
        "ORDER BY attempt",
        full,
    )
    # A 5xx the config calls transient is retried (then fails as attempts run out).
    assert [(a["outcome"], a["smtp_code"]) for a in attempts] == [("retry", 552), ("failed", 552)]
    assert attempts[0]["smtp_reply"] == "5.2.2 Mailbox full"


async def test_no_such_user_suppresses_the_address_and_its_waiting_emails(
    database_url: str, conn: asyncpg.Connection, smtp_sink: SmtpSink
) -> None:
    from datetime import UTC, datetime, timedelta

    later = datetime.now(UTC) + timedelta(hours=1)
    bounced, queued_later = await enqueue(
        conn,
        welcome(1, to="reject-ghost@example.com"),
        campaign(2, to="reject-ghost@example.com", send_at=later),
    )
    await drain(worker_for(database_url, sender_from_url(smtp_sink.url)))
    assert (await outcome(conn, bounced))[0] == "failed"
    assert await outcome(conn, queued_later) == ("cancelled", "suppressed: bounced")
    found = await suppression.find_suppressions(conn, ["Reject-Ghost@example.com"])
    assert "550" in found["reject-ghost@example.com"].reason


async def test_an_address_suppressed_after_queueing_is_cancelled_not_sent(
    database_url: str, conn: asyncpg.Connection, smtp_sink: SmtpSink
) -> None:
    kept, dropped = await enqueue(conn, welcome(1), welcome(2))
    # Straight into the table: the email is still waiting when the worker claims it.
    await conn.execute(
        "INSERT INTO mailq.suppressions (address, reason) VALUES ('user2@example.com', 'spam')"
    )
    await drain(worker_for(database_url, sender_from_url(smtp_sink.url)))
    assert await outcome(conn, dropped) == ("cancelled", "suppressed: spam")
    assert (await outcome(conn, kept))[0] == "sent"
    assert [r.recipients for r in smtp_sink.received] == [["user1@example.com"]]
    assert (
        await conn.fetchval("SELECT count(*) FROM mailq.attempts WHERE email_id = $1", dropped) == 0
    )


async def test_suppress_unsuppress_list_import(conn: asyncpg.Connection) -> None:
    waiting = await enqueue(conn, welcome(1, to="Ann@Example.com"), welcome(2))
    result = await suppression.suppress(conn, ["ann@example.com", "ANN@example.com"], "asked")
    assert (result.added, result.cancelled) == (1, 1)
    assert (await outcome(conn, waiting[0]))[1] == "suppressed: asked"
    imported = await suppression.import_suppressions(
        conn, iter(["b@example.com", ("c@example.com", "complaint"), "ann@example.com"])
    )
    assert imported.added == 2
    page = await suppression.list_suppressions(conn, limit=2)
    assert [s.address for s in page] == ["ann@example.com", "b@example.com"]
    rest = await suppression.list_suppressions(conn, after=page[-1].address)
    assert [(s.address, s.reason) for s in rest] == [("c@example.com", "complaint")]
    assert await suppression.unsuppress(conn, ["B@example.com", "zed@example.com"]) == 1
    with pytest.raises(suppression.InvalidEmail, match=r"addresses\[0\]"):
        await suppression.suppress(conn, ["not an address"], "x")


async def test_campaign_emails_carry_one_click_unsubscribe_that_works(
    database_url: str, conn: asyncpg.Connection, smtp_sink: SmtpSink
) -> None:
    from datetime import UTC, datetime

    new = NewCampaign("Launch", "platform_complete", datetime.now(UTC))
    await create_campaign(conn, new, [Recipient("ann@example.com", {"name": "Ann"})])
    await drain(worker_for(database_url, sender_from_url(smtp_sink.url)))
    (received,) = smtp_sink.received
    message = received.message
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url = message["List-Unsubscribe"].split(", ")[1].strip("<>")
    assert url.startswith("https://mail.example.com/v1/unsubscribe/")
    assert url in message.get_body(("plain",)).get_content()
    token = url.rsplit("/", 1)[1]
    later = await enqueue(conn, campaign(5, to="ann@example.com"))
    address, result = await unsubscribe(conn, SECRET.encode(), token)
    assert address == "ann@example.com" and (result.added, result.cancelled) == (1, 1)
    assert (await outcome(conn, later[0]))[0] == "cancelled"
    with pytest.raises(MailqError):
        await unsubscribe(conn, b"wrong", token)
    assert token == make_token(SECRET.encode(), "ann@example.com")
    assert UnsubscribeLinks(SECRET.encode(), "x").url("a@b.c").startswith("x/v1/unsubscribe/")


async def test_staging_redirects_every_email(
    database_url: str, conn: asyncpg.Connection, smtp_sink: SmtpSink
) -> None:
    await enqueue(conn, welcome(1, cc=["boss@example.com"]))
    worker = worker_for(
        database_url, sender_from_url(smtp_sink.url), redirect_all_to="staging@example.com"
    )
    await drain(worker)
    (received,) = smtp_sink.received
    assert received.recipients == ["staging@example.com"]
    assert received.message["To"] == "staging@example.com"
    assert received.message["X-Mailq-Original-To"] == "user1@example.com, boss@example.com"


@pytest.mark.parametrize("offered", [True, False])
async def test_international_addresses_need_smtputf8(
    database_url: str, conn: asyncpg.Connection, offered: bool
) -> None:
    sink = SmtpSink(smtputf8=offered)
    sink.start()
    try:
        (email_id,) = await enqueue(conn, welcome(1, to="jürgen@exämple.de"))
        await drain(worker_for(database_url, sender_from_url(sink.url)))
        state, error = await outcome(conn, email_id)
        if offered:
            assert state == "sent"
            assert sink.received[0].recipients == ["jürgen@exämple.de"]
        else:
            assert state == "failed" and "does not offer SMTPUTF8" in (error or "")
            assert sink.received == []
    finally:
        sink.stop()


async def test_a_template_that_fails_at_send_time_fails_the_email_and_sends_nothing(
    database_url: str, conn: asyncpg.Connection, smtp_sink: SmtpSink
) -> None:
    (email_id,) = await enqueue(conn, welcome(1))
    await conn.execute(
        "UPDATE mailq.emails SET content = jsonb_set(content, '{context}', '{}') WHERE id = $1",
        email_id,
    )
    await drain(worker_for(database_url, sender_from_url(smtp_sink.url)))
    state, error = await outcome(conn, email_id)
    assert state == "failed" and "template rendering failed" in (error or "")
    assert smtp_sink.received == []


async def test_a_configured_dkim_key_signs_what_the_worker_sends(
    database_url: str, conn: asyncpg.Connection, smtp_sink: SmtpSink, tmp_path: Path
) -> None:
    import subprocess

    subprocess.run(
        ["openssl", "genrsa", "-out", str(tmp_path / "dkim.pem"), "2048"],
        check=True,
        capture_output=True,
    )
    config_file = tmp_path / "mailq.toml"
    config_file.write_text(
        '[dkim]\ndomain = "example.com"\nselector = "mail"\nprivate_key = "dkim.pem"\n'
    )
    config = load_config(config_file)
    await enqueue(conn, campaign(1))
    await drain(worker_for(database_url, sender_from_url(smtp_sink.url), config))
    (received,) = smtp_sink.received
    signature = received.message["DKIM-Signature"]
    assert "d=example.com" in signature and "s=mail" in signature
    assert "list-unsubscribe" in signature.lower()
