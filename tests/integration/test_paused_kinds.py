"""Pausing a kind: no worker claims it, its due emails do not keep workers awake, and
resuming wakes the workers, which then send it."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from mailq import Settings, admin, enqueue
from mailq.db.claims import email_claim_due, email_next_due
from mailq.delivery.local import RecordingSender
from mailq.errors import UsageError
from mailq.worker.worker import Worker
from tests.db.test_claims import everything, register
from tests.support.emails import campaign, welcome
from tests.support.waiting import eventually


async def test_a_paused_kind_is_not_claimed_and_does_not_count_as_due(
    conn: asyncpg.Connection,
) -> None:
    (first,) = await enqueue(conn, welcome(1))
    (other,) = await enqueue(conn, campaign(2))
    worker = await register(conn)
    assert await admin.pause_kind(conn, "welcome") is True
    assert await admin.pause_kind(conn, "welcome") is False
    assert await admin.paused_kinds(conn) == ["welcome"]

    claimed = await email_claim_due(conn, everything(), worker)
    assert [e.id for e in claimed] == [other]
    # Only the paused welcome email waits: nothing is due for this worker.
    assert await email_next_due(conn, ["welcome", "search_engine"]) is None

    assert await admin.resume_kind(conn, "welcome") is True
    assert await admin.resume_kind(conn, "welcome") is False
    claimed = await email_claim_due(conn, everything(), worker)
    assert [e.id for e in claimed] == [first]


async def test_resume_wakes_listening_workers(database_url: str, conn: asyncpg.Connection) -> None:
    await admin.pause_kind(conn, "welcome")
    listener = await asyncpg.connect(database_url)
    payloads: asyncio.Queue[str] = asyncio.Queue()
    await listener.add_listener("mailq_emails", lambda *args: payloads.put_nowait(args[-1]))
    try:
        await admin.resume_kind(conn, "welcome")
        assert await asyncio.wait_for(payloads.get(), timeout=10) == "0"
    finally:
        await listener.close()


async def test_a_running_worker_holds_a_paused_kind_and_sends_it_once_resumed(
    database_url: str, conn: asyncpg.Connection
) -> None:
    await admin.pause_kind(conn, "welcome")
    sender = RecordingSender()
    # A long poll interval: only the resume's NOTIFY can wake the worker in time.
    settings = Settings(database_url=database_url, lease_s=5.0, poll_interval_s=60.0)
    worker = Worker(settings, sender)
    task = asyncio.create_task(worker.run())
    try:
        ids = await enqueue(conn, welcome(1), campaign(2))

        async def campaign_sent() -> bool:
            return len(sender.sent) == 1

        await eventually(campaign_sent, timeout=20, message="the campaign was not sent")
        assert sender.sent[0].email_id == ids[1]
        await admin.resume_kind(conn, "welcome")

        async def both_sent() -> bool:
            return len(sender.sent) == 2

        await eventually(both_sent, timeout=20, message="the resumed kind was not sent")
        assert sender.sent[1].email_id == ids[0]
    finally:
        worker.stop()
        await asyncio.wait_for(task, timeout=30)


async def test_a_kind_name_is_checked(conn: asyncpg.Connection) -> None:
    with pytest.raises(UsageError, match="is not a kind name"):
        await admin.pause_kind(conn, "Welcome; DROP TABLE")
