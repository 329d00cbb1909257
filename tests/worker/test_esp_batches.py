"""A worker process sending through an ESP backend with a batch call (Postmark, Resend)
against a local server that answers as the provider documents (tests/delivery/esp/fake.py;
the request and answer shapes are cited in tests/delivery/esp/test_postmark.py and
test_resend.py).

A burst goes out in batches of at most the worker's concurrency, each email once; a lone
email goes alone through the single-send call; the provider's ids are recorded on the
attempts; a worker killed while the provider holds its batch loses nothing, and Resend's
re-sent batch carries the same Idempotency-Key.
"""

from __future__ import annotations

import asyncio
import itertools
import signal
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from starlette.responses import JSONResponse, Response

from mailq import Settings, enqueue
from mailq.config import load_config
from mailq.delivery.backends import sender_from_url
from mailq.worker.duties import RescueExpired
from mailq.worker.worker import Worker
from tests.delivery.esp.fake import FakeProvider, Seen, running
from tests.delivery.esp.messages import endpoint
from tests.support import processes
from tests.support.emails import welcome
from tests.support.waiting import eventually

TOKEN = "server-token-1234"
CONCURRENCY = 8


def postmark_message_ids(seen: Seen) -> list[str]:
    """The Message-IDs of a Postmark request (one message or a batch)."""
    body = seen.json
    items = body if isinstance(body, list) else [body]
    return [
        next(h["Value"] for h in item["Headers"] if h["Name"] == "Message-ID") for item in items
    ]


def resend_message_ids(seen: Seen) -> list[str]:
    body = seen.json
    items = body if isinstance(body, list) else [body]
    return [item["headers"]["Message-ID"] for item in items]


def postmark_accepts() -> Callable[[Seen], Response]:
    """Postmark's 200: one result per message, in order, each with its MessageID."""
    ids = itertools.count(1)

    def answer(seen: Seen) -> Response:
        def result() -> dict[str, object]:
            return {"MessageID": f"pm-{next(ids)}", "ErrorCode": 0, "Message": "OK"}

        if seen.path == "/email/batch":
            return JSONResponse([result() for _ in seen.json])
        return JSONResponse(result())

    return answer


def resend_accepts() -> Callable[[Seen], Response]:
    ids = itertools.count(1)

    def answer(seen: Seen) -> Response:
        if seen.path == "/emails/batch":
            return JSONResponse({"data": [{"id": f"rs-{next(ids)}"} for _ in seen.json]})
        return JSONResponse({"id": f"rs-{next(ids)}"})

    return answer


def holding(released: asyncio.Event) -> Callable[[Seen], Awaitable[Response]]:
    """An answer that keeps the request open until `released` (the worker is killed
    meanwhile), then answers as a failing server would."""

    async def answer(seen: Seen) -> Response:
        await released.wait()
        return Response(b"", status_code=503)

    return answer


async def attempts_by_email(conn: asyncpg.Connection) -> dict[str, list[Any]]:
    rows = await conn.fetch(
        "SELECT e.message_id, a.outcome, a.provider_message_id FROM mailq.attempts AS a"
        " JOIN mailq.emails AS e ON e.id = a.email_id ORDER BY a.email_id, a.attempt"
    )
    found: dict[str, list[Any]] = {}
    for row in rows:
        found.setdefault(row["message_id"], []).append((row["outcome"], row["provider_message_id"]))
    return found


async def count_sent(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM mailq.emails WHERE status = 'sent'"))


async def test_a_burst_goes_in_batches_and_a_lone_email_alone(
    database_url: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    async with running(postmark_accepts()) as provider:
        burst = await enqueue(conn, *(welcome(n) for n in range(30)))
        env = processes.worker_env(
            database_url,
            f"postmark://{TOKEN}@?endpoint={endpoint(provider.url)}",
            concurrency=str(CONCURRENCY),
        )
        with processes.workers(env, 1, log=tmp_path / "worker.log"):
            await eventually(
                lambda: _equals(count_sent(conn), len(burst)), timeout=30, message="burst"
            )
            during_burst = len(provider.seen)
            (lone,) = await enqueue(conn, welcome(99))
            await eventually(
                lambda: _equals(count_sent(conn), len(burst) + 1), timeout=30, message="lone"
            )

        batches = provider.seen[:during_burst]
        sizes = [len(postmark_message_ids(s)) for s in batches]
        assert all(s.headers["x-postmark-server-token"] == TOKEN for s in provider.seen)
        assert max(sizes) <= CONCURRENCY  # a batch is at most what the worker claimed
        assert any(s.path == "/email/batch" and n > 1 for s, n in zip(batches, sizes, strict=True))
        sent = Counter(m for s in batches for m in postmark_message_ids(s))
        stored = dict(await conn.fetch("SELECT id, message_id FROM mailq.emails"))
        assert sent == Counter(stored[i] for i in burst)  # each email once

        # A lone email goes through the single call, with nothing added to it.
        (alone,) = provider.seen[during_burst:]
        assert alone.path == "/email"
        assert postmark_message_ids(alone) == [stored[lone]]

        # The provider's id of each message is recorded on its attempt.
        attempts = await attempts_by_email(conn)
        assert len(attempts) == len(burst) + 1
        ids = [a[0][1] for a in attempts.values()]
        assert all(a == [("sent", a[0][1])] for a in attempts.values())
        assert len(set(ids)) == len(ids) and all(i and i.startswith("pm-") for i in ids)


async def _equals(count: Awaitable[int], expected: int) -> bool:
    return await count == expected


async def kill_mid_batch(
    database_url: str,
    conn: asyncpg.Connection,
    tmp_path: Path,
    provider: FakeProvider,
    backend: str,
    emails: int,
) -> list[int]:
    """Enqueue `emails`, start a worker process, kill -9 it while the provider holds its
    batch request, rescue its emails and send them again with an in-process worker."""
    released = asyncio.Event()
    provider.answer(holding(released))
    ids = await enqueue(conn, *(welcome(n) for n in range(emails)))
    env = processes.worker_env(database_url, backend, concurrency=str(CONCURRENCY), lease="2")
    worker = processes.start_worker(env, log=tmp_path / "worker.log")
    try:
        await eventually(lambda: provider.seen, timeout=30, message="no batch reached the server")
    finally:
        processes.stop(worker, signal.SIGKILL)
        released.set()
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    assert pool is not None
    rescue = RescueExpired(lease_s=2)
    try:

        async def rescued() -> bool:
            await rescue.run(pool)
            left = await conn.fetchval("SELECT count(*) FROM mailq.emails WHERE status = 'sending'")
            return bool(left == 0)

        await eventually(rescued, timeout=30, message="the dead worker's emails were not rescued")
    finally:
        await pool.close()
    settings = Settings(database_url=database_url, concurrency=CONCURRENCY, lease_s=5.0)
    again = Worker(settings, sender_from_url(backend, connections=CONCURRENCY))
    await asyncio.wait_for(again.run(until_empty=True), timeout=30)
    return ids


async def test_a_worker_killed_mid_batch_loses_nothing(
    database_url: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    async with running(postmark_accepts()) as provider:
        backend = f"postmark://{TOKEN}@?endpoint={endpoint(provider.url)}"
        ids = await kill_mid_batch(database_url, conn, tmp_path, provider, backend, emails=5)
        held, *again = provider.seen
    assert held.path == "/email/batch" and len(postmark_message_ids(held)) == 5
    states = dict(await conn.fetch("SELECT id, status FROM mailq.emails"))
    assert states == {i: "sent" for i in ids}
    # Postmark has no idempotency key: the held batch goes out again (the duplicate window,
    # widened to the batch), and every email of it is recorded as sent.
    resent = sorted(m for s in again for m in postmark_message_ids(s))
    assert resent == sorted(postmark_message_ids(held))
    attempts = await attempts_by_email(conn)
    assert all([o for o, _ in a] == ["lost", "sent"] for a in attempts.values())


async def test_resend_resends_a_killed_batch_with_the_same_idempotency_key(
    database_url: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    async with running(resend_accepts()) as provider:
        backend = f"resend://re_key_123@?endpoint={endpoint(provider.url)}"
        ids = await kill_mid_batch(database_url, conn, tmp_path, provider, backend, emails=5)
        held, *again = provider.seen
    assert held.path == "/emails/batch" and len(resend_message_ids(held)) == 5
    (resent,) = again  # the rescued emails go out as the same batch ...
    assert resent.path == "/emails/batch"
    # ... with the same key and the same body: Resend answers it without sending twice.
    assert resent.headers["idempotency-key"] == held.headers["idempotency-key"]
    assert resent.body == held.body
    states = dict(await conn.fetch("SELECT id, status FROM mailq.emails"))
    assert states == {i: "sent" for i in ids}
    attempts = await attempts_by_email(conn)
    assert all(a[-1][0] == "sent" and a[-1][1].startswith("rs-") for a in attempts.values())


async def test_a_429_retry_after_holds_the_shared_backend_limit(
    database_url: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    config_file = tmp_path / "mailq.toml"
    config_file.write_text("[backend]\nrate = 50\nburst = 50\n")
    config = load_config(config_file)
    limited = JSONResponse(
        {"ErrorCode": 429, "Message": "Rate limit exceeded"},
        status_code=429,
        headers={"Retry-After": "40"},
    )
    async with running(lambda seen: limited) as provider:
        (email_id,) = await enqueue(conn, welcome(1))
        backend = f"postmark://{TOKEN}@?endpoint={endpoint(provider.url)}"
        settings = Settings(database_url=database_url, concurrency=CONCURRENCY)
        worker = Worker(settings, sender_from_url(backend), config=config)
        running_worker = asyncio.create_task(worker.run())
        try:
            held = await eventually(
                lambda: conn.fetchval(
                    "SELECT tokens FROM mailq.rate_buckets WHERE name = 'backend' AND tokens < 0"
                ),
                timeout=30,
                message="the backend's bucket was not held",
            )
        finally:
            worker.stop()
            await asyncio.wait_for(running_worker, 30)
    assert len(provider.seen) == 1
    # Every worker sharing the bucket gets no token for the 40 s the provider asked for ...
    assert held == pytest.approx(-50 * 40, rel=0.05)
    # ... and the email itself is due again then, not after its kind's backoff.
    due_in = await conn.fetchval(
        "SELECT extract(epoch FROM e.run_at - a.finished_at) FROM mailq.attempts AS a"
        " JOIN mailq.emails AS e ON e.id = a.email_id WHERE e.id = $1",
        email_id,
    )
    assert float(due_in) == pytest.approx(40, abs=2)
    assert await conn.fetchval("SELECT status FROM mailq.emails WHERE id = $1", email_id) == (
        "waiting"
    )
