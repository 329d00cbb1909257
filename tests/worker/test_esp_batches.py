"""A worker process sending through an ESP backend with a batch call (Postmark, Resend)
against a local server that answers as the provider documents (tests/delivery/esp/fake.py;
the request and answer shapes are cited in tests/delivery/esp/test_postmark.py and
test_resend.py).

A burst goes out in batches of at most the worker's concurrency, each email once; a lone
email goes alone through the single-send call; the provider's ids are recorded on the
attempts; a worker killed while the provider holds its batch loses nothing, and Resend's
re-sent batch carries the same Idempotency-Key. Right before the batch request the lease of
each email is proven again: one that cannot be proven is handed back and left out.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import signal
import socket
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from starlette.responses import JSONResponse, Response

from mailq import Email, Settings, enqueue
from mailq.compose.unsubscribe import UnsubscribeLinks
from mailq.config import load_config
from mailq.db.leases import WorkerIdentity
from mailq.delivery.backends import sender_from_url
from mailq.models import ClaimedEmail, Outcome
from mailq.validation import to_row
from mailq.worker.attempts import SendAttempts
from mailq.worker.duties import RescueExpired
from mailq.worker.lease import LeaseProof
from mailq.worker.slots import SlotLedger
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


class LapsingHeartbeat:
    """The heartbeat as the lease proof sees it. `lapse()`: the lease runs out (the database
    went away, or the worker froze). With `renews`, the next renewal registers again and,
    as LeaseProof.check_claims does with the database's answer, revokes the claims that
    were taken back meanwhile (`taken_back`)."""

    def __init__(self, ledger: SlotLedger, taken_back: set[int], *, renews: bool) -> None:
        self._ledger = ledger
        self._taken_back = taken_back
        self._renews = renews
        self._proven = True
        self._renewed = asyncio.Event()

    def lapse(self) -> None:
        self._proven = False

    def lease_left_s(self) -> float:
        return 10.0 if self._proven else 0.0

    async def wait_renewed(self, timeout: float) -> bool:
        if self._renews:
            emails = self._ledger.emails()
            held = {(e.id, e.attempt) for e in emails if e.id not in self._taken_back}
            self._ledger.revoke_unheld(emails, held)
            self._proven = True
            return True
        try:
            await asyncio.wait_for(self._renewed.wait(), timeout)
        except TimeoutError:
            return False
        return True


class LapseWhileBuilding:
    """Stands where the DKIM signer does (the last step of building each message): the
    lease lapses once the batch's messages are built, before its request."""

    def __init__(self, heartbeat: LapsingHeartbeat, after: int) -> None:
        self._heartbeat = heartbeat
        self._left = after

    def sign(self, message: Any) -> Any:
        self._left -= 1
        if self._left == 0:
            self._heartbeat.lapse()
        return message


def claimed(email_id: int) -> ClaimedEmail:
    row = to_row(
        Email(to=f"ann{email_id}@example.com", subject="Hi", text="Hello."),
        default_from="news@example.com",
    )
    return ClaimedEmail(
        email_id, row.kind, row.priority, 1, None, row.to_address, row.message_id,
        json.loads(row.content), datetime.now(UTC),
    )  # fmt: skip


@pytest.mark.parametrize("renews", [True, False], ids=["taken-back-one", "lease-not-renewed"])
async def test_the_lease_of_each_email_is_proven_right_before_the_batch_request(
    database_url: str, renews: bool
) -> None:
    emails = [claimed(n) for n in (1, 2, 3)]
    ledger = SlotLedger()
    ledger.take(emails)
    heartbeat = LapsingHeartbeat(ledger, taken_back={2}, renews=renews)
    proof = LeaseProof(ledger, uuid.uuid4(), wait_s=0.2)
    proof.watch(heartbeat)
    identity = WorkerIdentity(uuid.uuid4(), socket.gethostname(), 1, ("default",), CONCURRENCY)
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=1)
    assert pool is not None
    async with running(postmark_accepts()) as provider:
        sender = sender_from_url(f"postmark://{TOKEN}@?endpoint={endpoint(provider.url)}")
        attempts = SendAttempts(
            pool,
            identity,
            sender,
            policies={},
            retry_policy=None,
            redirect_all_to=None,
            unsubscribe=UnsubscribeLinks(b"k" * 32, "https://example.com"),
            dkim=LapseWhileBuilding(heartbeat, after=len(emails)),  # type: ignore[arg-type]
            proof=proof,
        )
        try:
            results = await attempts.attempt_batch(emails, datetime.now(UTC))
        finally:
            await sender.close()
            await pool.close()
    outcomes = {r.email.id: r.outcome for r in results}
    if renews:
        # The email taken back meanwhile is handed back unsent; the others go in the batch.
        assert outcomes == {1: Outcome.SENT, 2: Outcome.RELEASED, 3: Outcome.SENT}
        (request,) = provider.seen
        assert request.path == "/email/batch"
        assert postmark_message_ids(request) == [emails[0].message_id, emails[2].message_id]
    else:
        # The lease could not be proven at all: nothing is sent, every email handed back.
        assert outcomes == {e.id: Outcome.RELEASED for e in emails}
        assert provider.seen == []
        assert all("could not prove its lease" in (r.error or "") for r in results)
