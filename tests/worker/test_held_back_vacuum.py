"""While a long transaction holds vacuum back: a claim starts where the worker's last claim
of its kind and priority ended (mailq.worker.claim_starts), so it reads few entries of the
claim index however many dead ones lie before; an email due behind that start is still
claimed, by the rescan from the start that follows within RESCAN_S. The rescue reads none
of the live workers' entries."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from mailq import enqueue
from mailq.db.claims import ScanStarts, email_claim_due
from mailq.db.emails import email_release, email_rescue_expired
from mailq.db.leases import WorkerIdentity, worker_lease_register
from mailq.db.queries import QUERIES
from mailq.delivery.local import RecordingSender
from mailq.kinds import ClaimPlan
from mailq.worker import claim_starts
from mailq.worker.claim_starts import ClaimStarts
from tests.support.emails import welcome
from tests.support.waiting import eventually
from tests.worker.test_worker import running, worker_for

EMAILS = 3_000
BATCH = 100
WELCOME = ClaimPlan(["welcome"], [BATCH], BATCH)


@pytest.fixture
async def pinned(database_url: str) -> AsyncIterator[None]:
    """A forgotten transaction: it holds an xid, so no row version deleted after it began
    can be removed, and the claimed emails' entries stay in the claim index."""
    holder = await asyncpg.connect(database_url)
    transaction = holder.transaction()
    await transaction.start()
    await holder.fetchval("SELECT txid_current()")
    try:
        yield
    finally:
        await transaction.rollback()
        await holder.close()


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def _index_reads(conn: asyncpg.Connection, index: str = "emails_due_idx") -> int:
    """Entries read from `index` so far, this backend's own counts flushed first."""
    await conn.execute("SELECT pg_stat_force_next_flush()")  # at the end of this statement
    return int(
        await conn.fetchval(
            "SELECT idx_tup_read FROM pg_stat_user_indexes WHERE indexrelname = $1", index
        )
    )


async def _claim_reads(
    conn: asyncpg.Connection, starts: ScanStarts, now: datetime
) -> tuple[int, int]:
    """One claim of BATCH, rolled back: the emails it claimed and the index entries it read."""
    before = await _index_reads(conn)
    transaction = conn.transaction()
    await transaction.start()
    try:
        rows = await conn.fetch(
            QUERIES["email_claim_due"],
            ["welcome"], [BATCH], uuid.uuid4(), now, BATCH, None, starts.run_at, starts.id,
        )  # fmt: skip
    finally:
        await transaction.rollback()
    return len(rows), await _index_reads(conn) - before


async def _drain_with_starts(
    conn: asyncpg.Connection, starts: ClaimStarts, count: int, now: datetime
) -> list[int]:
    claimed: list[int] = []
    while len(claimed) < count:
        scan = starts.for_claim(["welcome"])
        batch = await email_claim_due(conn, WELCOME, uuid.uuid4(), now=now, starts=scan)
        starts.learn(batch, rescan=scan is None)
        assert batch, "the claim found nothing"
        claimed += [e.id for e in batch]
    return claimed


async def test_with_vacuum_held_back_a_claim_reads_few_entries_per_email(
    conn: asyncpg.Connection, pinned: None
) -> None:
    await enqueue(conn, *(welcome(n) for n in range(EMAILS + 2 * BATCH)))
    # Claimed an hour later: their run_at is well before the claim time less the lag.
    later = datetime.now(UTC) + timedelta(hours=1)
    starts = ClaimStarts(clock=Clock())
    await _drain_with_starts(conn, starts, EMAILS, later)

    rows, from_keys = await _claim_reads(conn, starts.of(["welcome"]), later)
    assert rows == BATCH
    rows_again, from_start = await _claim_reads(conn, ScanStarts.from_start(), later)
    assert rows_again == BATCH
    # From the start the scan reads the entry of every email claimed before (3,000 dead
    # ones); from the key, about the batch it claims.
    assert from_start >= EMAILS, from_start
    assert from_keys <= 2 * BATCH, from_keys


async def test_an_email_due_behind_the_start_is_claimed_by_the_next_rescan(
    conn: asyncpg.Connection, pinned: None
) -> None:
    now = datetime.now(UTC)
    (early,) = await enqueue(conn, welcome(0, send_at=now - timedelta(minutes=30)))
    await enqueue(conn, *(welcome(n) for n in range(1, 500)))
    later = now + timedelta(hours=1)
    holder = uuid.uuid4()
    (taken,) = await email_claim_due(conn, ClaimPlan(["welcome"], [1], 1), holder, now=later)
    assert taken.id == early
    clock = Clock()
    starts = ClaimStarts(clock=clock)
    await _drain_with_starts(conn, starts, 300, later)
    # Handed back: waiting again where it was, before every start key.
    assert await email_release(conn, [taken], holder) == {early}

    scan = starts.for_claim(["welcome"])
    assert scan is not None
    batch = await email_claim_due(conn, WELCOME, uuid.uuid4(), now=later, starts=scan)
    starts.learn(batch, rescan=False)
    assert early not in {e.id for e in batch}
    assert 0 < starts.rescan_in() <= claim_starts.RESCAN_S

    clock.now += claim_starts.RESCAN_S
    assert starts.rescan_in() == 0
    scan = starts.for_claim(["welcome"])
    assert scan is None  # from the start, in claim order: the early email comes first
    batch = await email_claim_due(conn, WELCOME, uuid.uuid4(), now=later, starts=scan)
    assert batch[0].id == early


async def test_a_worker_sends_an_email_handed_back_behind_its_start(
    database_url: str, conn: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(claim_starts, "RESCAN_S", 0.5)
    monkeypatch.setattr(claim_starts, "ENQUEUE_LAG_S", 0.0)
    now = datetime.now(UTC)
    (early,) = await enqueue(conn, welcome(0, send_at=now - timedelta(minutes=30)))
    holder = uuid.uuid4()
    (taken,) = await email_claim_due(conn, ClaimPlan(["welcome"], [1], 1), holder)
    sender = RecordingSender()
    worker = worker_for(database_url, sender, poll_interval_s=60.0)
    async with running(worker):
        later = await enqueue(conn, *(welcome(n) for n in range(1, 50)))

        async def sent_later() -> bool:
            return len(sender.sent) >= len(later)

        await eventually(sent_later, timeout=10, message="the worker did not send the batch")
        # Handed back behind the worker's start key: the NOTIFY wakes it, its claim from the
        # key misses the email, the rescan RESCAN_S later takes it.
        assert await email_release(conn, [taken], holder) == {early}

        async def sent_early() -> bool:
            return (
                await conn.fetchval("SELECT status FROM mailq.emails WHERE id = $1", early)
                == "sent"
            )

        await eventually(sent_early, timeout=5, message="the email behind the start waited")


async def test_with_vacuum_held_back_the_rescue_skips_the_live_workers_claims(
    conn: asyncpg.Connection, pinned: None
) -> None:
    live = WorkerIdentity(uuid.uuid4(), "test", 1, ("welcome",), 16)
    await worker_lease_register(conn, live, 30.0)
    await enqueue(conn, *(welcome(n) for n in range(EMAILS + 1)))
    held = 0
    while held < EMAILS:
        held += len(await email_claim_due(conn, WELCOME, live.id))
    dead = uuid.uuid4()  # no lease row at all
    (lost,) = await email_claim_due(conn, ClaimPlan(["welcome"], [1], 1), dead)
    before = await _index_reads(conn, "emails_sending_idx")
    assert await email_rescue_expired(conn, 100) == [lost.id]
    assert await _index_reads(conn, "emails_sending_idx") - before <= 10
