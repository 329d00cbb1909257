"""The claim, the outcome and the lease, one named statement at a time, on a real Postgres."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from mailq import enqueue
from mailq.db.claims import email_claim_due, email_next_due
from mailq.db.emails import (
    email_cancel,
    email_delete_finished,
    email_finish,
    email_release,
    email_rescue_expired,
    email_retry,
)
from mailq.db.leases import WorkerIdentity, worker_lease_register
from mailq.kinds import BUILTIN_KINDS, ClaimPlan, plan_claim
from mailq.models import AttemptResult, ClaimedEmail, Outcome
from tests.support.emails import campaign, welcome

ALL = list(BUILTIN_KINDS.values())


async def register(conn: asyncpg.Connection, lease_s: float = 30.0) -> uuid.UUID:
    worker = WorkerIdentity(uuid.uuid4(), "test", 1, tuple(BUILTIN_KINDS), 16)
    await worker_lease_register(conn, worker, lease_s)
    return worker.id


def everything(n: int = 100) -> ClaimPlan:
    return ClaimPlan(list(BUILTIN_KINDS), [n] * len(BUILTIN_KINDS), n)


def result(email: ClaimedEmail, outcome: Outcome, **fields: object) -> AttemptResult:
    return AttemptResult(email, outcome, datetime.now(UTC), **fields)  # type: ignore[arg-type]


async def state_of(conn: asyncpg.Connection, email_id: int) -> str:
    return await conn.fetchval(
        "SELECT mailq.email_state(status, run_at, attempts) FROM mailq.emails WHERE id = $1",
        email_id,
    )


async def test_claims_go_by_priority_then_due_time_then_id(conn: asyncpg.Connection) -> None:
    now = datetime.now(UTC)
    late, early = await enqueue(
        conn,
        campaign(1, send_at=now - timedelta(seconds=1)),
        campaign(2, send_at=now - timedelta(seconds=60)),
    )
    (urgent,) = await enqueue(conn, welcome(3))
    worker = await register(conn)
    claimed = await email_claim_due(conn, everything(), worker)
    assert [e.id for e in claimed] == [urgent, early, late]
    assert all(e.attempt == 1 for e in claimed)


async def test_emails_due_later_are_not_claimed_until_their_time(conn: asyncpg.Connection) -> None:
    send_at = datetime.now(UTC) + timedelta(hours=1)
    (email_id,) = await enqueue(conn, welcome(1, send_at=send_at))
    worker = await register(conn)
    assert await state_of(conn, email_id) == "scheduled"
    assert await email_claim_due(conn, everything(), worker) == []
    due_in = await email_next_due(conn, list(BUILTIN_KINDS))
    assert due_in is not None and 3500 < due_in <= 3600
    at_due_time = send_at + timedelta(milliseconds=1)
    claimed = await email_claim_due(conn, everything(), worker, now=at_due_time)
    assert [e.id for e in claimed] == [email_id]


async def test_skip_locked_gives_concurrent_claimers_disjoint_emails(
    database_url: str, conn: asyncpg.Connection
) -> None:
    await enqueue(conn, *[campaign(i) for i in range(10)])
    worker = await register(conn)
    other = await asyncpg.connect(database_url)
    try:
        tx = other.transaction()
        await tx.start()
        held = await email_claim_due(other, everything(4), worker)
        # The first claim is not committed: its rows are locked, not yet 'sending'.
        mine = await email_claim_due(conn, everything(100), worker)
        await tx.commit()
    finally:
        await other.close()
    assert len(held) == 4 and len(mine) == 6
    assert not {e.id for e in held} & {e.id for e in mine}


async def test_a_claim_takes_no_more_than_asked_per_kind_and_in_all(
    conn: asyncpg.Connection,
) -> None:
    await enqueue(conn, *[welcome(i) for i in range(5)], *[campaign(i) for i in range(5)])
    worker = await register(conn)
    plan = ClaimPlan(["welcome", "search_engine"], [2, 10], 4)
    claimed = await email_claim_due(conn, plan, worker)
    assert [e.kind for e in claimed] == ["welcome", "welcome", "search_engine", "search_engine"]


async def test_outcomes_are_written_in_one_batch_with_their_attempts(
    conn: asyncpg.Connection,
) -> None:
    await enqueue(conn, welcome(1), welcome(2), welcome(3))
    worker = await register(conn)
    a, b, c = await email_claim_due(conn, everything(), worker)
    applied = await email_finish(
        conn,
        [
            result(a, Outcome.SENT, smtp_code=250, smtp_reply="ok"),
            result(b, Outcome.RETRY, smtp_code=451, smtp_reply="later", retry_in_s=300),
            result(c, Outcome.FAILED, smtp_code=550, smtp_reply="no such user", error="550"),
        ],
        worker,
    )
    assert applied == {a.id, b.id, c.id}
    assert [await state_of(conn, e.id) for e in (a, b, c)] == ["sent", "retrying", "failed"]
    due_in = await conn.fetchval(
        "SELECT extract(epoch FROM run_at - now()) FROM mailq.emails WHERE id = $1", b.id
    )
    assert 250 < due_in <= 300
    attempts = await conn.fetch("SELECT * FROM mailq.attempts ORDER BY email_id")
    assert [(r["outcome"], r["smtp_code"]) for r in attempts] == [
        ("sent", 250),
        ("retry", 451),
        ("failed", 550),
    ]


async def test_a_late_outcome_from_a_lost_lease_cannot_overwrite_the_new_attempt(
    conn: asyncpg.Connection,
) -> None:
    (email_id,) = await enqueue(conn, welcome(1))
    dead = await register(conn, lease_s=1)
    (first,) = await email_claim_due(conn, everything(), dead)
    later = datetime.now(UTC) + timedelta(seconds=5)
    assert await email_rescue_expired(conn, 100, now=later) == [email_id]
    alive = await register(conn)
    (second,) = await email_claim_due(conn, everything(), alive, now=later)
    assert second.attempt == 2

    stale = await email_finish(conn, [result(first, Outcome.SENT)], dead)
    assert stale == set(), "the dead worker's result is refused"
    assert await state_of(conn, email_id) == "sending"

    fresh = await email_finish(conn, [result(second, Outcome.SENT)], alive)
    assert fresh == {email_id}
    outcomes = await conn.fetch(
        "SELECT attempt, outcome FROM mailq.attempts WHERE email_id = $1 ORDER BY attempt",
        email_id,
    )
    assert [(r["attempt"], r["outcome"]) for r in outcomes] == [(1, "lost"), (2, "sent")]


async def test_a_batch_written_again_after_its_reply_was_lost_is_reconciled_not_lost(
    conn: asyncpg.Connection,
) -> None:
    ids = await enqueue(conn, welcome(1), welcome(2), welcome(3))
    worker = await register(conn)
    claimed = await email_claim_due(conn, everything(), worker)
    batch = [result(e, Outcome.SENT) for e in claimed]
    first = await email_finish(conn, batch, worker)
    assert first == set(ids) and not first.reconciled

    # The worker did not learn of that commit and writes the same batch again.
    again = await email_finish(conn, batch, worker)
    assert again == set(ids) and again.reconciled == set(ids)
    # Another worker's try of the same attempt is not this worker's outcome.
    other = await email_finish(conn, batch[:1], uuid.uuid4())
    assert other == set() and not other.reconciled
    attempts = await conn.fetchval(
        "SELECT count(*) FROM mailq.attempts WHERE email_id = ANY($1::bigint[])", ids
    )
    assert attempts == 3, "each attempt recorded once"


async def test_rescue_leaves_live_workers_alone_and_fails_a_last_attempt(
    conn: asyncpg.Connection,
) -> None:
    (kept,) = await enqueue(conn, welcome(1))
    (last,) = await enqueue(conn, welcome(2, max_attempts=1))
    alive = await register(conn, lease_s=3600)
    dead = await register(conn, lease_s=1)
    await email_claim_due(conn, ClaimPlan(["welcome"], [1], 1), alive)
    await email_claim_due(conn, ClaimPlan(["welcome"], [1], 1), dead)
    rescued = await email_rescue_expired(conn, 100, now=datetime.now(UTC) + timedelta(seconds=5))
    assert rescued == [last]
    assert await state_of(conn, kept) == "sending"
    assert await state_of(conn, last) == "failed"


async def test_release_hands_back_without_spending_an_attempt(conn: asyncpg.Connection) -> None:
    (email_id,) = await enqueue(conn, welcome(1))
    worker = await register(conn)
    claimed = await email_claim_due(conn, everything(), worker)
    assert await email_release(conn, claimed, worker) == {email_id}
    assert await state_of(conn, email_id) == "queued"
    assert await conn.fetchval("SELECT attempts FROM mailq.emails") == 0


async def test_cancel_and_retry_by_operator(conn: asyncpg.Connection) -> None:
    a, b = await enqueue(conn, welcome(1), welcome(2, max_attempts=1))
    worker = await register(conn)
    assert await email_cancel(conn, [a], "operator") == [a]
    (claimed,) = await email_claim_due(conn, everything(), worker)
    await email_finish(conn, [result(claimed, Outcome.FAILED, error="x")], worker)
    assert sorted(await email_retry(conn, [a, b])) == [a, b]
    assert await conn.fetchval("SELECT max_attempts FROM mailq.emails WHERE id = $1", b) == 2
    assert [await state_of(conn, i) for i in (a, b)] == ["queued", "retrying"]


async def test_state_invariants_are_enforced_by_the_database(conn: asyncpg.Connection) -> None:
    (email_id,) = await enqueue(conn, welcome(1))
    with pytest.raises(asyncpg.CheckViolationError):
        await conn.execute("UPDATE mailq.emails SET status = 'sent' WHERE id = $1", email_id)
    with pytest.raises(asyncpg.CheckViolationError):
        await conn.execute("UPDATE mailq.emails SET status = 'sending' WHERE id = $1", email_id)
    with pytest.raises(asyncpg.CheckViolationError):
        await conn.execute("UPDATE mailq.emails SET status = 'lost' WHERE id = $1", email_id)


async def test_finished_counts_follow_every_change_including_deletes(
    conn: asyncpg.Connection,
) -> None:
    ids = await enqueue(conn, *[welcome(i) for i in range(5)])
    worker = await register(conn)
    claimed = await email_claim_due(conn, everything(), worker)
    await email_finish(conn, [result(e, Outcome.SENT) for e in claimed], worker)

    async def sent_count() -> int:
        return await conn.fetchval(
            "SELECT coalesce(sum(count), 0) FROM mailq.queue_stats WHERE state = 'sent'"
        )

    assert await sent_count() == 5
    await email_retry(conn, ids[:1])  # nothing: sent emails are not retried
    deleted = await email_delete_finished(conn, datetime.now(UTC) + timedelta(days=1), 2)
    assert deleted == 2
    assert await sent_count() == 3
    assert await conn.fetchval("SELECT count(*) FROM mailq.attempts") == 3


async def test_plans_from_kinds_fit_the_claim_statement(conn: asyncpg.Connection) -> None:
    await enqueue(conn, *[welcome(i) for i in range(3)], *[campaign(i) for i in range(30)])
    worker = await register(conn)
    claimed = await email_claim_due(conn, plan_claim(16, {}, ALL), worker)
    assert len(claimed) == 16
    assert [e.kind for e in claimed[:3]] == ["welcome"] * 3


async def test_a_claimed_email_carries_each_column_of_its_row_into_its_own_field(
    conn: asyncpg.Connection,
) -> None:
    # ClaimedEmail.from_row reads the claim's columns by position: every field must get the
    # column of its name, none its neighbour's.
    expires = datetime.now(UTC) + timedelta(days=3)
    email_id = await conn.fetchval(
        """
        INSERT INTO mailq.emails (kind, priority, to_address, to_name, message_id, content,
                                  max_attempts, expires_at, attempts, deferrals, send_at)
        VALUES ('welcome', 3, 'ann@example.com', 'Ann Example', '<m1@example.com>',
                '{"subject": "s", "text": "t"}', 7, $1, 2, 1, now() - interval '1 minute')
        RETURNING id
        """,
        expires,
    )
    worker = await register(conn)
    (email,) = await email_claim_due(conn, everything(), worker)
    row = await conn.fetchrow(
        "SELECT claimed_at, send_at FROM mailq.emails WHERE id = $1", email_id
    )
    assert (email.id, email.kind, email.priority, email.attempt, email.max_attempts) == (
        email_id,
        "welcome",
        3,
        3,
        7,
    )
    assert (email.to, email.to_name, email.message_id) == (
        "ann@example.com",
        "Ann Example",
        "<m1@example.com>",
    )
    assert email.content == {"subject": "s", "text": "t"}
    assert (email.claimed_at, email.first_due_at) == (row["claimed_at"], row["send_at"])
    assert (email.campaign_id, email.suppressed, email.expires_at) == (None, None, expires)
    assert email.deferrals == 1
