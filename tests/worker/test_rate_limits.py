"""Rate limits hold across worker processes (token buckets in Postgres), and a backend-wide
limit serves `welcome` first."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from mailq import Settings, enqueue
from mailq.campaigns import NewCampaign, create_campaign
from mailq.config import load_config
from mailq.delivery.backends import sender_from_url
from mailq.worker.worker import Worker
from tests.support import processes
from tests.support.emails import campaign, welcome
from tests.support.smtp import SmtpSink
from tests.support.waiting import eventually

RATE = 20
BURST = 5
EMAILS = 200


def busiest_second(times: list[float]) -> int:
    times = sorted(times)
    best, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] > 1.0:
            start += 1
        best = max(best, end - start + 1)
    return best


async def test_four_worker_processes_share_one_limit(
    database_url: str, conn: asyncpg.Connection, smtp_sink: SmtpSink, tmp_path: Path
) -> None:
    config_file = tmp_path / "mailq.toml"
    config_file.write_text(f"[backend]\nrate = {RATE}\nburst = {BURST}\n")
    env = processes.worker_env(database_url, smtp_sink.url, config=str(config_file), secret_key="k")
    with processes.workers(env, 4, log=tmp_path / "workers.log"):

        async def all_registered() -> bool:
            return bool(await conn.fetchval("SELECT count(*) FROM mailq.workers") == 4)

        await eventually(all_registered, timeout=30, message="workers did not start")
        started = time.time()
        await enqueue(conn, *(campaign(i) for i in range(EMAILS)))
        received = await asyncio.to_thread(smtp_sink.wait_for, EMAILS, 60)
    assert len(received) == EMAILS
    times = [r.received_at for r in received]
    assert busiest_second(times) <= RATE + BURST
    assert max(times) - started >= (EMAILS - BURST) / RATE
    assert len(smtp_sink.count_by_message_id()) == EMAILS  # each once


async def test_a_backend_limit_serves_welcome_first(
    database_url: str, conn: asyncpg.Connection, smtp_sink: SmtpSink, tmp_path: Path
) -> None:
    config_file = tmp_path / "mailq.toml"
    config_file.write_text("[backend]\nrate = 10\nburst = 4\nwelcome_reserve = 2\n")
    config = load_config(config_file)
    new = NewCampaign("Big", "search_engine", datetime.now(UTC), subject="Hi", text="News")
    await create_campaign(conn, new, (f"c{i}@example.com" for i in range(60)))
    settings = Settings(database_url=database_url, lease_s=5.0, secret_key="k")
    worker = Worker(settings, sender_from_url(smtp_sink.url), config=config)
    task = asyncio.create_task(worker.run())
    try:
        await asyncio.to_thread(smtp_sink.wait_for, 10, 30)  # the campaign is being throttled
        latencies = []
        for n in range(3):
            to = f"welcome{n}@example.com"
            enqueued = time.time()
            await enqueue(conn, welcome(n, to=to))
            arrived = await eventually(
                lambda: smtp_sink.arrived_at(to),  # noqa: B023 (awaited in this iteration)
                timeout=5,
                interval=0.005,
                message=f"welcome {n} did not arrive",
            )
            latencies.append(arrived - enqueued)
            # The next welcome comes once the throttled campaign has moved on by two emails.
            seen = len(smtp_sink.received)
            await eventually(
                lambda: len(smtp_sink.received) >= seen + 2,  # noqa: B023
                timeout=5,
                message="the campaign stopped",
            )
        assert max(latencies) < 1.0, latencies
        campaign_left = await conn.fetchval(
            "SELECT count(*) FROM mailq.emails WHERE kind = 'search_engine' AND status = 'waiting'"
        )
        assert campaign_left > 0  # welcome did not wait for the campaign to finish
    finally:
        worker.stop()
        await asyncio.wait_for(task, timeout=30)
