"""A worker killed in the middle of sends: the kind's lost-send policy decides.

`hold` emails whose SMTP DATA had begun become `unknown`; everything else a dead worker
held (DATA not begun, or the kind's policy is `retry`) waits again and is sent again with
the same Message-ID."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import asyncpg

from mailq import Email, Settings, enqueue
from mailq.config import load_config
from mailq.db.emails import email_attempts, email_get, email_retry
from mailq.delivery.backends import sender_from_url
from mailq.worker.duties import RescueExpired
from mailq.worker.worker import Worker
from tests.support import processes
from tests.support.emails import welcome
from tests.support.smtp import SmtpSink
from tests.support.waiting import eventually

CONFIG = """
[kinds.receipt]
priority = 1
lost = "hold"
"""


def receipt(to: str) -> Email:
    return Email(to=to, kind="receipt", subject="Your receipt", text="Paid.")


async def test_a_killed_worker_leaves_hold_sends_unknown_and_retries_the_rest(
    database_url: str, conn: asyncpg.Connection, smtp_sink: SmtpSink, tmp_path: Path
) -> None:
    config_file = tmp_path / "mailq.toml"
    config_file.write_text(CONFIG)
    config = load_config(config_file)
    in_data, before_data = await enqueue(
        conn,
        receipt("stall-a@example.com"),
        receipt("stallrcpt-b@example.com"),
        kinds=config.kinds,
    )
    (retried,) = await enqueue(conn, welcome(1, to="stall-c@example.com"))
    env = processes.worker_env(
        database_url, smtp_sink.url, config=str(config_file), lease="2", secret_key="k"
    )
    worker = processes.start_worker(env, log=tmp_path / "worker.log")
    try:
        await eventually(
            lambda: smtp_sink.stalled("data") == 2 and smtp_sink.stalled("rcpt") == 1,
            timeout=30,
            message="the sends did not reach DATA/RCPT",
        )
        marked = await conn.fetchval(
            "SELECT data_started_at IS NOT NULL FROM mailq.emails WHERE id = $1", in_data
        )
        assert marked  # recorded durably before DATA, for the hold kind only
    finally:
        processes.stop(worker, signal.SIGKILL)

    # The lease really runs out here (the point: a killed process stops heartbeating), so
    # this waits up to its 2 s; tests/worker/test_duties.py rescues with `now` instead.
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    assert pool is not None
    rescue = RescueExpired(lease_s=2)
    try:

        async def rescued() -> bool:
            await rescue.run(pool)
            count = await conn.fetchval(
                "SELECT count(*) FROM mailq.emails WHERE status = 'sending'"
            )
            return bool(count == 0)

        await eventually(rescued, timeout=30, message="the dead worker's emails were not rescued")
    finally:
        await pool.close()
    states = dict(
        await conn.fetch("SELECT id, mailq.email_state(status, run_at, attempts) FROM mailq.emails")
    )
    assert states == {in_data: "unknown", before_data: "retrying", retried: "retrying"}
    assert [a["outcome"] for a in await email_attempts(conn, in_data)] == ["lost"]
    unknown = await conn.fetchrow("SELECT * FROM mailq.queue_stats WHERE state = 'unknown'")
    assert (unknown["kind"], unknown["count"]) == ("receipt", 1)

    # The retried emails go out again, the Message-ID unchanged (receivers can drop a
    # duplicate); the unknown one waits for an operator.
    smtp_sink.release()
    settings = Settings(database_url=database_url, lease_s=5.0, secret_key="k")
    again = Worker(settings, sender_from_url(smtp_sink.url), config=config)
    await asyncio.wait_for(again.run(until_empty=True), timeout=30)
    stored = dict(await conn.fetch("SELECT to_address, message_id FROM mailq.emails"))
    received = [(m.recipients[0], m.message_id) for m in smtp_sink.received]
    assert ("stall-c@example.com", stored["stall-c@example.com"]) in received
    assert ("stallrcpt-b@example.com", stored["stallrcpt-b@example.com"]) in received
    assert all(to != "stall-a@example.com" for to, _ in received)
    outcomes = [a["outcome"] for a in await email_attempts(conn, retried)]
    assert outcomes == ["lost", "sent"]
    assert (await email_get(conn, in_data) or {})["state"] == "unknown"
    assert await email_retry(conn, [in_data]) == [in_data]  # the operator decides
