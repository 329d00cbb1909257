"""The lease proof on a real Postgres: a claim whose reply was under way while the worker's
lease lapsed (the worker frozen between the claim's commit and its reply) sends none of what
was taken back meanwhile, though the heartbeat's check of the claims held ran before those
emails reached the ledger."""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg

from mailq import enqueue
from mailq.db.claims import email_claim_due
from mailq.db.leases import WorkerIdentity, worker_lease_register
from mailq.errors import NotSent
from mailq.kinds import BUILTIN_KINDS, ClaimPlan
from mailq.models import ClaimedEmail
from mailq.worker.duties import RescueExpired
from mailq.worker.lease import LeaseProof
from mailq.worker.slots import SlotLedger
from tests.support.emails import welcome

EVERYTHING = ClaimPlan(list(BUILTIN_KINDS), [100] * len(BUILTIN_KINDS), 100)


async def registered(conn: asyncpg.Connection) -> uuid.UUID:
    worker = WorkerIdentity(uuid.uuid4(), "test", 1, tuple(BUILTIN_KINDS), 16)
    await worker_lease_register(conn, worker, 1)
    return worker.id


async def claimed_under_watch(
    conn: asyncpg.Connection, emails: int
) -> tuple[SlotLedger, LeaseProof, int, list[ClaimedEmail]]:
    """A worker's ledger and lease proof, and a claim of `emails` committed whose reply is
    still to reach the ledger (with the lapse count as it was when the claim began)."""
    await enqueue(conn, *(welcome(n) for n in range(1, emails + 1)))
    worker = await registered(conn)
    ledger = SlotLedger()
    proof = LeaseProof(ledger, worker)
    lapses = proof.lapses()
    claimed = await email_claim_due(conn, EVERYTHING, worker)
    return ledger, proof, lapses, claimed


async def sendable(proof: LeaseProof, emails: list[ClaimedEmail]) -> list[int]:
    """The emails the lease proof lets this worker send."""
    allowed = []
    for email in emails:
        try:
            await proof.prove(email)
        except NotSent:
            continue
        allowed.append(email.id)
    return allowed


async def take_back(conn: asyncpg.Connection, pool: asyncpg.Pool) -> int:
    later: datetime = await conn.fetchval("SELECT now() + interval '1 minute'")
    return await RescueExpired(lease_s=1).run(pool, now=later)


async def test_a_claim_answered_after_the_lapse_check_sends_nothing_taken_back(
    conn: asyncpg.Connection, pool: asyncpg.Pool
) -> None:
    ledger, proof, lapses, claimed = await claimed_under_watch(conn, 2)
    assert await take_back(conn, pool) == 2  # the worker froze past its lease
    await proof.check_claims(conn)  # it wakes: registered again, the ledger still empty
    ledger.take(claimed)  # the claim's reply arrives
    await proof.admit(pool, claimed, lapses)
    assert await sendable(proof, claimed) == []


async def test_a_claim_answered_after_the_lapse_check_sends_what_it_still_holds(
    conn: asyncpg.Connection, pool: asyncpg.Pool
) -> None:
    ledger, proof, lapses, claimed = await claimed_under_watch(conn, 2)
    await proof.check_claims(conn)  # lapsed, but nothing was taken back
    ledger.take(claimed)
    await proof.admit(pool, claimed, lapses)
    assert await sendable(proof, claimed) == [e.id for e in claimed]


async def test_a_claim_checked_while_the_database_cannot_answer_sends_none_of_it(
    conn: asyncpg.Connection, database_url: str
) -> None:
    ledger, proof, lapses, claimed = await claimed_under_watch(conn, 1)
    await proof.check_claims(conn)
    ledger.take(claimed)
    gone = await asyncpg.connect(database_url)
    await gone.close()
    await proof.admit(gone, claimed, lapses)
    assert await sendable(proof, claimed) == []  # handed back unsent, never sent twice


async def test_a_claim_begun_after_the_lapse_check_is_not_asked_about_again(
    conn: asyncpg.Connection, database_url: str
) -> None:
    await enqueue(conn, welcome(1))
    worker = await registered(conn)
    ledger = SlotLedger()
    proof = LeaseProof(ledger, worker)
    await proof.check_claims(conn)
    lapses = proof.lapses()  # the claim begins after the lease was proven again
    claimed = await email_claim_due(conn, EVERYTHING, worker)
    ledger.take(claimed)
    gone = await asyncpg.connect(database_url)
    await gone.close()
    await proof.admit(gone, claimed, lapses)  # would revoke them all had it asked
    assert await sendable(proof, claimed) == [e.id for e in claimed]
