"""Real worker processes against a real SMTP server: the guarantees of issue 2."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from mailq import enqueue
from tests.support import postgres
from tests.support.emails import campaign, welcome
from tests.support.processes import start_worker, stop, worker_env, workers
from tests.support.smtp import SmtpSink
from tests.support.waiting import eventually


@pytest.fixture
def slow_sink() -> Iterator[SmtpSink]:
    """An SMTP server that takes 50 ms to accept each message, so sends are in flight long
    enough for the crash and shutdown tests to catch them there."""
    sink = SmtpSink(delay_s=0.05)
    sink.start()
    try:
        yield sink
    finally:
        sink.stop()


async def count(conn: asyncpg.Connection, status: str) -> int:
    return await conn.fetchval("SELECT count(*) FROM mailq.emails WHERE status = $1", status)


async def all_sent(conn: asyncpg.Connection, total: int, timeout: float) -> None:
    async def done() -> bool:
        return await count(conn, "sent") == total

    await eventually(done, timeout=timeout, interval=0.2, message=f"{total} emails not all sent")


async def message_ids(conn: asyncpg.Connection) -> set[str]:
    return {r["message_id"] for r in await conn.fetch("SELECT message_id FROM mailq.emails")}


@pytest.mark.timeout(300)
async def test_four_workers_send_20000_emails_each_exactly_once(
    database_url: str, conn: asyncpg.Connection, smtp_sink: SmtpSink, tmp_path: Path
) -> None:
    total = 20_000
    await enqueue(conn, *[welcome(i) for i in range(5_000)])
    await enqueue(conn, *[campaign(i) for i in range(total - 5_000)])
    env = worker_env(database_url, smtp_sink.url, poll_interval="1")
    with workers(env, 4, log=tmp_path / "workers.log") as processes:
        await all_sent(conn, total, timeout=240)
        assert [p.poll() for p in processes] == [None] * 4, "a worker died"
        assert {stop(p) for p in processes} == {0}
    received = smtp_sink.count_by_message_id()
    assert sum(received.values()) == total
    assert set(received.values()) == {1}, "an email was received more than once"
    assert set(received) == await message_ids(conn)
    assert await conn.fetchval("SELECT count(DISTINCT worker_id) FROM mailq.attempts") == 4


@pytest.mark.timeout(300)
async def test_kill_9_loses_nothing_and_duplicates_stay_within_the_bound(
    database_url: str, conn: asyncpg.Connection, slow_sink: SmtpSink, tmp_path: Path
) -> None:
    total, concurrency, kills = 5_000, 8, 5
    await enqueue(conn, *[campaign(i) for i in range(total)])
    env = worker_env(
        database_url, slow_sink.url, lease="3", poll_interval="1", concurrency=str(concurrency)
    )
    log = tmp_path / "workers.log"
    with workers(env, 4, log=log) as processes:
        for _ in range(kills):

            async def victim() -> int | None:
                # A live worker that holds claims right now, by the database's word.
                return await conn.fetchval(
                    "SELECT w.pid FROM mailq.worker_leases w JOIN mailq.emails e "
                    "ON e.worker_id = w.id AND e.status = 'sending' "
                    "WHERE w.pid = ANY($1::int[]) LIMIT 1",
                    [p.pid for p in processes],
                )

            pid = await eventually(victim, timeout=60, message="no worker held claims")
            (process,) = [p for p in processes if p.pid == pid]
            os.kill(pid, signal.SIGKILL)
            process.wait(timeout=30)
            processes.remove(process)
            processes.append(start_worker(env, log=log))
        await all_sent(conn, total, timeout=240)
        assert {stop(p) for p in processes} == {0}
    received = slow_sink.count_by_message_id()
    assert set(received) == await message_ids(conn), "every email was received at least once"
    assert await count(conn, "sending") == 0
    twice = sum(n - 1 for n in received.values())
    bound = kills * concurrency
    lost = await conn.fetchval("SELECT count(*) FROM mailq.attempts WHERE outcome = 'lost'")
    print(
        f"\nkill -9 x{kills}: {twice} emails received twice (bound {bound}); {lost} lost attempts"
    )
    assert twice <= bound
    assert lost >= kills, "each victim held claims that were taken back"


async def test_an_idle_worker_wakes_on_notify_and_sends_scheduled_mail_on_time(
    database_url: str, conn: asyncpg.Connection, smtp_sink: SmtpSink, tmp_path: Path
) -> None:
    # The fallback poll is an hour: only NOTIFY (or the due time) can wake the worker.
    env = worker_env(database_url, smtp_sink.url, poll_interval="3600")
    with workers(env, 1, log=tmp_path / "worker.log") as (process,):

        async def registered() -> bool:
            return bool(await conn.fetchval("SELECT count(*) FROM mailq.workers"))

        await eventually(registered, timeout=30, message="the worker did not start")
        (now_id,) = await enqueue(conn, welcome(1))
        assert smtp_sink.wait_for(1, timeout=10), "not sent within 10 s of enqueue"

        send_at = await conn.fetchval("SELECT now() + interval '3 seconds'")
        (later_id,) = await enqueue(conn, welcome(2, send_at=send_at))
        assert len(smtp_sink.wait_for(2, timeout=13)) == 2, "scheduled email not sent in time"
        assert stop(process) == 0
    started = dict(await conn.fetch("SELECT email_id, started_at FROM mailq.attempts"))
    created = await conn.fetchval("SELECT created_at FROM mailq.emails WHERE id = $1", now_id)
    assert (started[now_id] - created).total_seconds() < 10
    assert started[later_id] >= send_at, "sent before its time"
    assert (started[later_id] - send_at).total_seconds() < 10


async def test_sigterm_finishes_in_flight_sends_and_exits_0(
    database_url: str, conn: asyncpg.Connection, slow_sink: SmtpSink, tmp_path: Path
) -> None:
    await enqueue(conn, *[campaign(i) for i in range(2_000)])
    env = worker_env(database_url, slow_sink.url, concurrency="16")
    with workers(env, 1, log=tmp_path / "worker.log") as (process,):

        async def busy() -> bool:
            return await count(conn, "sending") > 0 and len(slow_sink.received) > 50

        await eventually(busy, timeout=30, message="the worker did not get busy")
        assert stop(process, signal.SIGTERM, timeout=60) == 0
    assert await count(conn, "sending") == 0, "nothing is left claimed"
    received = slow_sink.count_by_message_id()
    sent = {
        r["message_id"]
        for r in await conn.fetch("SELECT message_id FROM mailq.emails WHERE status = 'sent'")
    }
    assert set(received) == sent, "every in-flight send finished and was recorded"
    assert set(received.values()) == {1}
    assert await count(conn, "waiting") == 2_000 - len(sent)


async def test_workers_reconnect_after_their_connections_are_cut(
    database_url: str,
    database_name: str,
    pg_admin_url: str,
    conn: asyncpg.Connection,
    slow_sink: SmtpSink,
    tmp_path: Path,
) -> None:
    total = 3_000
    await enqueue(conn, *[campaign(i) for i in range(total)])
    env = worker_env(database_url, slow_sink.url, poll_interval="3600", concurrency="16")
    log = tmp_path / "workers.log"
    with workers(env, 2, log=log) as processes:
        for threshold in (300, 1_200):

            async def progressed(n: int = threshold) -> bool:
                return len(slow_sink.received) >= n

            await eventually(progressed, timeout=120, message="no progress")
            # Cut every connection to the test database, as a Postgres restart would.
            assert postgres.terminate_backends(pg_admin_url, database_name) >= 4
            # Its own connection was cut too: closing it may meet a broken pipe.
            with contextlib.suppress(OSError):
                await conn.close()
            conn = await asyncpg.connect(database_url)
        # With the poll at an hour, finishing proves the workers listen again.
        await all_sent(conn, total, timeout=240)
        assert {stop(p) for p in processes} == {0}
    received = slow_sink.count_by_message_id()
    assert set(received) == await message_ids(conn)
    assert await count(conn, "sending") == 0
    assert "control connection restored" in log.read_text()
    await conn.close()


async def test_two_workers_never_claim_the_same_email_under_contention(
    database_url: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    """A second, SMTP-free check of the claim: 8 processes with the null backend race for
    30,000 emails; every email is attempted exactly once."""
    total = 30_000
    await enqueue(conn, *[campaign(i) for i in range(total)])
    env = worker_env(database_url, "null://", concurrency="64", poll_interval="1")
    with workers(env, 8, log=tmp_path / "workers.log") as processes:
        await all_sent(conn, total, timeout=240)
        assert {stop(p) for p in processes} == {0}
    attempts = await conn.fetchval("SELECT count(*) FROM mailq.attempts")
    assert attempts == total
    assert await conn.fetchval("SELECT max(attempts) FROM mailq.emails") == 1


async def test_hand_back_of_claims_that_never_started(
    database_url: str, conn: asyncpg.Connection, slow_sink: SmtpSink
) -> None:
    """In-process: with one send at a time, most claims wait; a stop hands them back."""
    from mailq import Settings
    from mailq.delivery.backends import sender_from_url
    from mailq.worker.worker import Worker

    await enqueue(conn, *[campaign(i) for i in range(50)])
    worker = Worker(
        Settings(database_url=database_url, concurrency=16),
        sender_from_url(slow_sink.url, connections=1),
        sender_parallelism=1,
    )
    task = asyncio.create_task(worker.run())

    async def claimed() -> bool:
        # 16 sends and as many claimed ahead, 4 of the 32 kept for welcome: 28 campaign
        # emails claimed, 1 sending.
        return await count(conn, "sending") == 28

    await eventually(claimed, timeout=20, message="the worker did not claim 28")
    worker.stop()
    await asyncio.wait_for(task, timeout=30)
    assert await count(conn, "sending") == 0
    sent = await count(conn, "sent")
    assert 1 <= sent < 16
    assert await conn.fetchval("SELECT count(*) FROM mailq.attempts") == sent
    assert (
        await conn.fetchval(
            "SELECT count(*) FROM mailq.emails WHERE status = 'waiting' AND attempts = 0"
        )
        == 50 - sent
    ), "handed-back emails did not spend an attempt"
