"""The worker in-process against a real SMTP server: outcomes, retries, bad emails, stop."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import asyncpg
import pytest

from mailq import Settings, enqueue
from mailq.compose.message import OutgoingMessage
from mailq.delivery.backends import sender_from_url
from mailq.delivery.local import RecordingSender
from mailq.delivery.sender import Sender, SendReceipt
from mailq.errors import DatabaseUnavailable
from mailq.retry import RetryPolicy
from mailq.worker.worker import Worker
from tests.support.emails import campaign, welcome
from tests.support.smtp import SmtpSink
from tests.support.waiting import eventually

FAST_RETRY = RetryPolicy(base_s=0.2, cap_s=1.0, jitter=0.0)


def worker_for(database_url: str, sender: Sender, **settings: object) -> Worker:
    base: dict[str, object] = {"database_url": database_url, "lease_s": 5.0}
    base.update(settings)
    return Worker(Settings(**base), sender, retry_policy=FAST_RETRY)  # type: ignore[arg-type]


@asynccontextmanager
async def running(worker: Worker) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(worker.run())
    try:
        yield task
    finally:
        worker.stop()
        await asyncio.wait_for(task, timeout=30)


async def states(conn: asyncpg.Connection) -> dict[int, str]:
    rows = await conn.fetch(
        "SELECT id, mailq.email_state(status, run_at, attempts) AS s FROM mailq.emails"
    )
    return {r["id"]: r["s"] for r in rows}


async def test_emails_are_delivered_over_smtp_with_their_message_id(
    database_url: str, conn: asyncpg.Connection, smtp_sink: SmtpSink
) -> None:
    ids = await enqueue(conn, welcome(1), campaign(2, cc=["copy@example.com"]))
    worker = worker_for(database_url, sender_from_url(smtp_sink.url))
    await asyncio.wait_for(worker.run(until_empty=True), timeout=30)
    assert set((await states(conn)).values()) == {"sent"}
    stored = dict(await conn.fetch("SELECT message_id, id FROM mailq.emails"))
    received = {r.message_id: r for r in smtp_sink.received}
    assert set(received) == set(stored)
    by_id = {stored[m]: r for m, r in received.items()}
    assert by_id[ids[1]].recipients == ["user2@example.com", "copy@example.com"]
    assert by_id[ids[0]].message["Subject"] == "Welcome, user 1"
    attempt = await conn.fetchrow("SELECT * FROM mailq.attempts WHERE email_id = $1", ids[0])
    assert attempt["outcome"] == "sent" and attempt["smtp_code"] == 250


async def test_a_4xx_is_retried_with_backoff_then_sent(
    database_url: str, conn: asyncpg.Connection, smtp_sink: SmtpSink
) -> None:
    (email_id,) = await enqueue(conn, welcome(1, to="tempfail-2-ann@example.com"))
    worker = worker_for(database_url, sender_from_url(smtp_sink.url), poll_interval_s=0.2)
    async with running(worker):

        async def sent() -> bool:
            return (await states(conn)).get(email_id) == "sent"

        await eventually(sent, timeout=20, message="the email was not sent after its retries")
    attempts = await conn.fetch(
        "SELECT attempt, outcome, smtp_code, started_at, finished_at FROM mailq.attempts "
        "WHERE email_id = $1 ORDER BY attempt",
        email_id,
    )
    assert [(a["outcome"], a["smtp_code"]) for a in attempts] == [
        ("retry", 451),
        ("retry", 451),
        ("sent", 250),
    ]
    # Backoff (0.2 s, then 0.4 s) shows between attempts, by the database's timestamps.
    gaps = [
        (b["started_at"] - a["finished_at"]).total_seconds()
        for a, b in itertools.pairwise(attempts)
    ]
    assert gaps[0] >= 0.15 and gaps[1] >= 0.35
    assert len(smtp_sink.received) == 1


async def test_a_4xx_schedules_the_next_attempt_one_backoff_after_the_last(
    database_url: str, conn: asyncpg.Connection, smtp_sink: SmtpSink
) -> None:
    """The backoff as the database records it, without waiting it out: a drain returns
    once the retry is due only in a minute."""
    (email_id,) = await enqueue(conn, welcome(1, to="tempfail-2-ann@example.com"))
    policy = RetryPolicy(base_s=60.0, cap_s=600.0, jitter=0.0)
    settings = Settings(database_url=database_url, lease_s=5.0)
    worker = Worker(settings, sender_from_url(smtp_sink.url), retry_policy=policy)
    await asyncio.wait_for(worker.run(until_empty=True), timeout=30)
    row = await conn.fetchrow(
        "SELECT e.run_at - a.finished_at AS wait, a.outcome, "
        "mailq.email_state(e.status, e.run_at, e.attempts) AS state "
        "FROM mailq.emails e JOIN mailq.attempts a ON a.email_id = e.id WHERE e.id = $1",
        email_id,
    )
    assert (row["outcome"], row["state"]) == ("retry", "retrying")
    assert row["wait"] == timedelta(seconds=policy.delay_s(1)) == timedelta(seconds=60)
    assert smtp_sink.received == []


async def test_a_5xx_fails_at_once_with_the_reply_recorded(
    database_url: str, conn: asyncpg.Connection, smtp_sink: SmtpSink
) -> None:
    (email_id,) = await enqueue(conn, welcome(1, to="reject-me@example.com"))
    worker = worker_for(database_url, sender_from_url(smtp_sink.url))
    await asyncio.wait_for(worker.run(until_empty=True), timeout=30)
    failed = await conn.fetchrow("SELECT * FROM mailq.failed WHERE id = $1", email_id)
    assert failed["attempts"] == 1
    assert failed["last_smtp_code"] == 550
    assert "no such user" in failed["last_smtp_reply"]
    assert smtp_sink.received == []


async def test_a_refused_cc_is_recorded_and_the_email_still_sent(
    database_url: str, conn: asyncpg.Connection, smtp_sink: SmtpSink
) -> None:
    (email_id,) = await enqueue(conn, welcome(1, cc=["reject-cc@example.com"]))
    worker = worker_for(database_url, sender_from_url(smtp_sink.url))
    await asyncio.wait_for(worker.run(until_empty=True), timeout=30)
    attempt = await conn.fetchrow("SELECT * FROM mailq.attempts WHERE email_id = $1", email_id)
    assert attempt["outcome"] == "sent"
    assert "reject-cc@example.com: 550" in attempt["error"]
    assert smtp_sink.received[0].recipients == ["user1@example.com"]


async def test_an_email_whose_handling_raises_fails_alone(
    database_url: str, conn: asyncpg.Connection, smtp_sink: SmtpSink
) -> None:
    good_before, bad, good_after = await enqueue(conn, welcome(1), welcome(2), welcome(3))
    # Stored content no template can render: the handler raises for this email only.
    await conn.execute("UPDATE mailq.emails SET content = content - 'from' WHERE id = $1", bad)
    worker = worker_for(database_url, sender_from_url(smtp_sink.url))
    await asyncio.wait_for(worker.run(until_empty=True), timeout=30)
    assert await states(conn) == {good_before: "sent", bad: "failed", good_after: "sent"}
    error = await conn.fetchval("SELECT last_error FROM mailq.emails WHERE id = $1", bad)
    assert "KeyError" in error


async def test_a_transient_failure_on_the_last_attempt_fails_the_email(
    database_url: str, conn: asyncpg.Connection, smtp_sink: SmtpSink
) -> None:
    (email_id,) = await enqueue(conn, welcome(1, to="tempfail-9-bob@example.com", max_attempts=2))
    worker = worker_for(database_url, sender_from_url(smtp_sink.url), poll_interval_s=0.2)
    async with running(worker):

        async def failed() -> bool:
            return (await states(conn)).get(email_id) == "failed"

        await eventually(failed, timeout=20, message="the email did not fail")
    outcomes = await conn.fetch(
        "SELECT outcome FROM mailq.attempts WHERE email_id = $1 ORDER BY attempt", email_id
    )
    assert [r["outcome"] for r in outcomes] == ["retry", "failed"]


# A URL where nothing listens: a run that tried to connect would raise DatabaseUnavailable.
UNREACHABLE = "postgresql://postgres@127.0.0.1:9/nowhere"


class ClosingSender(RecordingSender):
    """Records what it sends and whether the worker closed it."""

    def __init__(self) -> None:
        super().__init__()
        self.closed = False

    async def close(self) -> None:
        self.closed = True


async def test_stop_before_run_and_twice_is_safe() -> None:
    sender = ClosingSender()
    worker = worker_for(UNREACHABLE, sender)
    worker.stop()
    worker.stop()
    assert worker.stopping
    await asyncio.wait_for(worker.run(), timeout=10)
    await asyncio.wait_for(worker.run(), timeout=10)  # and again
    assert worker.totals.any() is False
    assert sender.closed is False, "a run that never started closes nothing"
    # The same worker not stopped first does try, and finds nothing there.
    with pytest.raises(DatabaseUnavailable):
        await asyncio.wait_for(worker_for(UNREACHABLE, sender).run(), timeout=30)


async def test_a_finished_run_can_be_stopped_and_run_again_harmlessly(
    database_url: str, conn: asyncpg.Connection
) -> None:
    (email_id,) = await enqueue(conn, welcome(1))
    sender = ClosingSender()
    worker = worker_for(database_url, sender)
    await asyncio.wait_for(worker.run(until_empty=True), timeout=30)
    assert sender.closed and [m.to for m in sender.sent] == ["user1@example.com"]
    worker.stop()
    worker.stop()
    await asyncio.wait_for(worker.run(until_empty=True), timeout=10)  # returns at once
    assert len(sender.sent) == 1
    assert (await states(conn)) == {email_id: "sent"}
    assert await conn.fetchval("SELECT count(*) FROM mailq.worker_leases") == 0


async def test_run_while_running_is_refused(database_url: str, conn: asyncpg.Connection) -> None:
    worker = worker_for(database_url, sender_from_url("null://"))
    task = asyncio.create_task(worker.run())
    try:

        async def registered() -> bool:
            return bool(await conn.fetchval("SELECT count(*) FROM mailq.worker_leases") == 1)

        await eventually(registered, timeout=20, message="the worker did not register")
        with pytest.raises(RuntimeError, match="already running"):
            await worker.run()
    finally:
        worker.stop()
        await asyncio.wait_for(task, timeout=30)
    assert await conn.fetchval("SELECT count(*) FROM mailq.worker_leases") == 0


class GatedSender:
    """Holds every send until the gate opens; counts the sends in progress."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.current = 0
        self.peak = 0
        self.sent = 0

    async def send(self, message: OutgoingMessage, before_data: object = None) -> SendReceipt:
        self.current += 1
        self.peak = max(self.peak, self.current)
        try:
            await self.gate.wait()
        finally:
            self.current -= 1
        self.sent += 1
        return SendReceipt(250, "ok")

    async def close(self) -> None:
        return None


async def test_sends_in_flight_fan_out_to_the_sender_parallelism_and_no_further(
    database_url: str, conn: asyncpg.Connection
) -> None:
    await enqueue(conn, *[welcome(i) for i in range(20)])
    sender = GatedSender()
    worker = Worker(
        Settings(database_url=database_url, concurrency=16), sender, sender_parallelism=4
    )
    task = asyncio.create_task(worker.run(until_empty=True))

    async def four_sending() -> bool:
        return sender.current == 4

    await eventually(four_sending, timeout=20, message="the lanes did not fan out to 4 sends")
    assert sender.peak == 4
    sender.gate.set()
    await asyncio.wait_for(task, timeout=30)
    assert sender.sent == 20
    assert sender.peak == 4
    assert set((await states(conn)).values()) == {"sent"}


async def test_claims_ahead_but_sends_at_most_concurrency_and_hands_back_the_rest(
    database_url: str, conn: asyncpg.Connection
) -> None:
    """The worker holds more claimed emails than its concurrency (claimed ahead), starts only
    `concurrency` of them while their outcomes wait, and a graceful stop hands back the
    claimed ones that never started: only the started ones are sent."""
    await enqueue(conn, *[welcome(i) for i in range(40)])
    sender = GatedSender()
    worker = Worker(
        Settings(database_url=database_url, concurrency=4), sender, sender_parallelism=16
    )
    task = asyncio.create_task(worker.run())

    async def claimed_ahead() -> bool:
        held = await conn.fetchval("SELECT count(*) FROM mailq.emails WHERE status = 'sending'")
        return sender.current == 4 and held > 4

    await eventually(claimed_ahead, timeout=20, message="the worker did not claim ahead")
    worker.stop()

    async def handed_back() -> bool:
        held = await conn.fetchval("SELECT count(*) FROM mailq.emails WHERE status = 'sending'")
        return bool(held == 4)

    await eventually(handed_back, timeout=20, message="the unstarted claims were not handed back")
    sender.gate.set()
    await asyncio.wait_for(task, timeout=30)
    assert sender.sent == 4 and sender.peak == 4
    rows = await conn.fetch("SELECT status, attempts FROM mailq.emails")
    assert (
        sorted((r["status"], r["attempts"]) for r in rows)
        == [("sent", 1)] * 4 + [("waiting", 0)] * 36
    )
