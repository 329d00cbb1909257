"""Campaigns at size: 100,000 recipients sent on time and once each (null backend), and a
5,000-recipient slice through a real SMTP server while welcome emails keep flowing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

from mailq import Settings, enqueue
from mailq.campaigns import NewCampaign, Recipient, create_campaign
from mailq.delivery.backends import sender_from_url
from mailq.worker.worker import Worker
from tests.support import processes
from tests.support.emails import welcome
from tests.support.smtp import SmtpSink
from tests.support.waiting import eventually

# send_at is this long after the insert starts (the insert takes ~2-3 s; more on a loaded machine)
LEAD_S = 12.0


def recipients(n: int) -> Iterator[Recipient]:
    for i in range(n):
        yield Recipient(f"user{i}@example.com", {"name": f"User {i}"})


async def check_sent_on_time_and_once(conn: asyncpg.Connection, campaign_id: int, n: int) -> None:
    send_at = await conn.fetchval("SELECT send_at FROM mailq.campaigns WHERE id = $1", campaign_id)
    row = await conn.fetchrow(
        "SELECT count(*) AS attempts, count(DISTINCT a.email_id) AS emails,"
        "       count(*) FILTER (WHERE a.outcome = 'sent') AS sent,"
        "       min(a.started_at) AS first_start, min(a.finished_at) AS first_finish"
        " FROM mailq.attempts a JOIN mailq.emails e ON e.id = a.email_id"
        " WHERE e.campaign_id = $1",
        campaign_id,
    )
    assert (row["attempts"], row["emails"], row["sent"]) == (n, n, n)
    assert row["first_start"] >= send_at, (row["first_start"], send_at)
    assert row["first_finish"] >= send_at
    progress = await conn.fetch(
        "SELECT state, count FROM mailq.campaign_progress WHERE campaign_id = $1", campaign_id
    )
    assert [(r["state"], r["count"]) for r in progress] == [("sent", n)]


async def test_a_100k_campaign_is_sent_after_its_send_at_and_once(
    database_url: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    n = 100_000
    env = processes.worker_env(database_url, "null://", concurrency="64", secret_key="k")
    with processes.workers(env, 2, log=tmp_path / "workers.log"):

        async def registered() -> bool:
            return bool(await conn.fetchval("SELECT count(*) FROM mailq.workers") == 2)

        await eventually(registered, timeout=30, message="the workers did not start")
        send_at = datetime.now(UTC) + timedelta(seconds=LEAD_S)
        new = NewCampaign("Everyone", "platform_complete", send_at)
        campaign, added = await create_campaign(conn, new, recipients(n))
        inserted_at = datetime.now(UTC)
        assert added.added == n
        assert inserted_at < send_at, "the insert took longer than the lead time"

        async def all_sent() -> bool:
            sent = await conn.fetchval(
                "SELECT coalesce(sum(n), 0) FROM mailq.campaign_counts WHERE campaign_id = $1 "
                "AND status = 'sent'",
                campaign.id,
            )
            return bool(sent == n)

        await eventually(all_sent, timeout=90, interval=0.5, message="the campaign was not sent")
    await check_sent_on_time_and_once(conn, campaign.id, n)


async def test_welcome_emails_overtake_a_campaign_on_the_wire(
    database_url: str, conn: asyncpg.Connection, smtp_sink: SmtpSink
) -> None:
    n = 5_000
    settings = Settings(database_url=database_url, concurrency=16, secret_key="k")
    worker = Worker(settings, sender_from_url(smtp_sink.url, connections=16))
    task = asyncio.create_task(worker.run())
    try:
        send_at = datetime.now(UTC) + timedelta(seconds=2)
        new = NewCampaign("Slice", "search_engine", send_at)
        campaign, _ = await create_campaign(conn, new, recipients(n))
        await asyncio.to_thread(smtp_sink.wait_for, 500, 30)  # the campaign is under way
        latencies: list[float] = []
        for i in range(5):
            to = f"newcomer{i}@example.com"
            enqueued = time.time()
            await enqueue(conn, welcome(i, to=to))
            arrived = await eventually(
                lambda: smtp_sink.arrived_at(to),  # noqa: B023 (awaited in this iteration)
                timeout=5,
                interval=0.01,
                message=f"welcome {i} did not arrive",
            )
            latencies.append(arrived - enqueued)
        assert max(latencies) < 2.0, latencies
        received = await asyncio.to_thread(smtp_sink.wait_for, n + 5, 60)
        assert len(received) == n + 5
        first_campaign = min(r.received_at for r in received if r.recipients[0].startswith("user"))
        assert first_campaign >= send_at.timestamp()
    finally:
        worker.stop()
        await asyncio.wait_for(task, timeout=60)
    counts = smtp_sink.count_by_message_id()
    assert len(counts) == n + 5 and set(counts.values()) == {1}
    await check_sent_on_time_and_once(conn, campaign.id, n)
