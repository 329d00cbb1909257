"""The maintenance duties on a real Postgres, with time as a parameter (no lease or retention
is waited out) and test signals (no sleeping until a duty has run)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta

import asyncpg
import pytest

from mailq import Settings, enqueue
from mailq.db.claims import email_claim_due
from mailq.db.connection import RESCUE_LOCK_KEY, schema_try_duty_lock
from mailq.db.emails import email_finish
from mailq.db.leases import WorkerIdentity, worker_lease_register
from mailq.delivery.backends import sender_from_url
from mailq.kinds import BUILTIN_KINDS, ClaimPlan
from mailq.models import AttemptResult, Outcome
from mailq.worker.duties import DutyRunner, ForgetDeadWorkers, PruneFinished, RescueExpired
from mailq.worker.duties.forget_workers import DEAD_WORKER_GRACE_S
from mailq.worker.signals import Signal, WorkerSignals
from mailq.worker.worker import Worker
from tests.support.emails import welcome
from tests.support.waiting import eventually

EVERYTHING = ClaimPlan(list(BUILTIN_KINDS), [100] * len(BUILTIN_KINDS), 100)


async def register(conn: asyncpg.Connection, lease_s: float) -> uuid.UUID:
    worker = WorkerIdentity(uuid.uuid4(), "test", 1, tuple(BUILTIN_KINDS), 16)
    await worker_lease_register(conn, worker, lease_s)
    return worker.id


async def db_now(conn: asyncpg.Connection) -> datetime:
    value: datetime = await conn.fetchval("SELECT now()")
    return value


async def states(conn: asyncpg.Connection) -> dict[int, str]:
    rows = await conn.fetch(
        "SELECT id, mailq.email_state(status, run_at, attempts) AS s FROM mailq.emails"
    )
    return {r["id"]: r["s"] for r in rows}


async def test_rescue_takes_back_a_dead_workers_emails_once_its_lease_is_over(
    conn: asyncpg.Connection, pool: asyncpg.Pool
) -> None:
    ids = await enqueue(conn, welcome(1), welcome(2), welcome(3))
    dead = await register(conn, lease_s=30)
    assert len(await email_claim_due(conn, EVERYTHING, dead)) == 3
    rescue = RescueExpired(lease_s=30, batch=2, signal=Signal[int]().enable())
    assert rescue.grace_s == 15  # half a lease
    now = await db_now(conn)
    assert await rescue.run(pool, now=now + timedelta(seconds=29)) == 0  # the lease holds
    assert await rescue.signal.wait() == 0
    # Expired, but not for the grace yet: a worker whose heartbeat is late keeps its claims.
    assert await rescue.run(pool, now=now + timedelta(seconds=44)) == 0
    assert await rescue.signal.wait() == 0
    assert set((await states(conn)).values()) == {"sending"}
    assert await rescue.run(pool, now=now + timedelta(seconds=46)) == 3  # batches of 2, 1
    assert await rescue.signal.wait() == 3
    assert await states(conn) == dict.fromkeys(ids, "retrying")
    outcomes = await conn.fetch("SELECT outcome, worker_id FROM mailq.attempts")
    assert [(r["outcome"], r["worker_id"]) for r in outcomes] == [("lost", dead)] * 3


async def test_rescue_is_done_by_one_worker_at_a_time(
    conn: asyncpg.Connection, pool: asyncpg.Pool
) -> None:
    await enqueue(conn, welcome(1))
    dead = await register(conn, lease_s=1)
    await email_claim_due(conn, EVERYTHING, dead)
    later = await db_now(conn) + timedelta(seconds=5)
    rescue = RescueExpired(lease_s=1)
    async with conn.transaction():
        assert await schema_try_duty_lock(conn, RESCUE_LOCK_KEY)  # another worker rescuing
        assert await rescue.run(pool, now=later) == 0
    assert await rescue.run(pool, now=later) == 1


async def test_a_worker_that_may_not_rescue_takes_nothing_back(
    conn: asyncpg.Connection, pool: asyncpg.Pool
) -> None:
    # Back from an outage itself (connected for less than a lease): the workers cut off with
    # it must first register again; it takes back nothing, however long their leases expired.
    await enqueue(conn, welcome(1))
    dead = await register(conn, lease_s=1)
    await email_claim_due(conn, EVERYTHING, dead)
    later = await db_now(conn) + timedelta(seconds=60)
    allowed = False
    rescue = RescueExpired(lease_s=1, may_rescue=lambda: allowed)
    assert await rescue.run(pool, now=later) == 0
    assert set((await states(conn)).values()) == {"sending"}
    allowed = True
    assert await rescue.run(pool, now=later) == 1


async def test_a_rescued_email_keeps_its_place_in_its_queue(
    conn: asyncpg.Connection, pool: asyncpg.Pool
) -> None:
    (early,) = await enqueue(conn, welcome(1))
    due = await conn.fetchval("SELECT run_at FROM mailq.emails WHERE id = $1", early)
    await enqueue(conn, *[welcome(n) for n in range(2, 12)])
    dead = await register(conn, lease_s=1)
    first = await email_claim_due(conn, ClaimPlan(["welcome"], [1], 1), dead)
    assert [e.id for e in first] == [early]
    later = await db_now(conn) + timedelta(seconds=60)
    assert await RescueExpired(lease_s=1).run(pool, now=later) == 1
    row = await conn.fetchrow("SELECT run_at, priority FROM mailq.emails WHERE id = $1", early)
    assert (row["run_at"], row["priority"]) == (due, 0)
    alive = await register(conn, lease_s=60)
    (again,) = await email_claim_due(conn, ClaimPlan(["welcome"], [1], 1), alive, now=later)
    assert again.id == early  # first in line again, not behind the ten queued after it


def test_rescue_runs_every_fifth_of_a_lease_and_at_least_every_5_s() -> None:
    assert RescueExpired(lease_s=10).interval_s == 2.0
    assert RescueExpired(lease_s=60).interval_s == 5.0


async def test_dead_workers_are_forgotten_after_the_grace_unless_they_hold_emails(
    conn: asyncpg.Connection, pool: asyncpg.Pool
) -> None:
    alive = await register(conn, lease_s=3 * DEAD_WORKER_GRACE_S)
    dead = [await register(conn, lease_s=1) for _ in range(3)]
    await enqueue(conn, welcome(1))
    await email_claim_due(conn, EVERYTHING, dead[0])  # still holds an email
    forget = ForgetDeadWorkers(batch=1, signal=Signal[int]().enable())
    now = await db_now(conn)
    assert await forget.run(pool, now=now + timedelta(seconds=DEAD_WORKER_GRACE_S - 60)) == 0
    assert await forget.run(pool, now=now + timedelta(seconds=DEAD_WORKER_GRACE_S + 60)) == 2
    assert [await forget.signal.wait(), await forget.signal.wait()] == [0, 2]
    left = {r["id"] for r in await conn.fetch("SELECT id FROM mailq.worker_leases")}
    assert left == {alive, dead[0]}


async def test_prune_deletes_what_finished_before_the_retention(
    conn: asyncpg.Connection, pool: asyncpg.Pool
) -> None:
    done, held = await enqueue(conn, welcome(1), welcome(2))
    worker = await register(conn, lease_s=30)
    first, _second = await email_claim_due(conn, ClaimPlan(["welcome"], [2], 2), worker)
    assert first.id == done
    now = await db_now(conn)
    await email_finish(conn, [AttemptResult(first, Outcome.SENT, now)], worker)
    prune = PruneFinished(timedelta(days=1), batch=1, signal=Signal[int]().enable())
    assert await prune.run(pool, now=now + timedelta(hours=23)) == 0
    assert await prune.run(pool, now=now + timedelta(days=2)) == 1
    assert [await prune.signal.wait(), await prune.signal.wait()] == [0, 1]
    assert await states(conn) == {held: "sending"}  # not finished: kept however old
    assert await conn.fetchval("SELECT count(*) FROM mailq.attempts") == 0


class Flaky:
    """A duty that fails its first runs, then succeeds, signalling each run."""

    def __init__(self, name: str, fails: list[BaseException]) -> None:
        self.name = name
        self.interval_s = 0.01
        self.fails = fails
        self.runs: Signal[int] = Signal[int]().enable()

    async def run(self, pool: asyncpg.Pool, now: datetime | None = None) -> int:
        self.runs.emit(len(self.fails))
        if self.fails:
            raise self.fails.pop(0)
        return 0


async def test_a_failing_duty_is_logged_and_tried_again_and_the_others_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    flaky = Flaky("flaky", [OSError("database restarting"), KeyError("a bug")])
    steady = Flaky("steady", [])
    runner = DutyRunner(None, [flaky, steady])  # type: ignore[arg-type]  # unused by these
    task = asyncio.create_task(runner.run())
    try:
        assert [await flaky.runs.wait() for _ in range(3)] == [2, 1, 0]
        assert [await steady.runs.wait() for _ in range(3)] == [0, 0, 0]
    finally:
        task.cancel()
    failed = [r for r in caplog.records if getattr(r, "action", None) == "duty_failed"]
    assert [(r.levelname, r.duty) for r in failed] == [  # type: ignore[attr-defined]
        ("WARNING", "flaky"),
        ("ERROR", "flaky"),
    ]
    assert failed[0].getMessage() == "flaky failed; retrying in 0.0s: database restarting"


async def test_a_worker_runs_its_duties_at_start_and_signals_each(
    database_url: str, conn: asyncpg.Connection
) -> None:
    (email_id,) = await enqueue(conn, welcome(1))
    # Claimed by a worker that left no lease at all: a rescue takes it back, once this worker
    # has been connected for longer than a lease (its first runs, at start, may not).
    await email_claim_due(conn, EVERYTHING, uuid.uuid4())
    signals = WorkerSignals.enabled()
    settings = Settings(database_url=database_url, lease_s=2.0)
    worker = Worker(settings, sender_from_url("null://"), signals=signals)
    task = asyncio.create_task(worker.run())
    try:
        assert await signals.rescued.wait(timeout=20) == 0  # at start: just connected
        assert await signals.forgotten.wait() == 0
        assert await signals.pruned.wait() == 0
        while (rescued := await signals.rescued.wait(timeout=20)) == 0:
            pass
        assert rescued == 1
        assert await signals.recorded.wait() == 1  # the rescued email, sent again

        async def sent() -> bool:
            return (await states(conn)).get(email_id) == "sent"

        await eventually(sent, timeout=10, message="the rescued email was not sent")
    finally:
        worker.stop()
        await asyncio.wait_for(task, timeout=30)
    outcomes = await conn.fetch("SELECT outcome FROM mailq.attempts ORDER BY attempt")
    assert [r["outcome"] for r in outcomes] == ["lost", "sent"]
