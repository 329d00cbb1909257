"""Display names on a real Postgres: stored apart from the bare address (INSERT and COPY, both
drivers), matched on the bare address by suppression and campaign de-duplication, and given
back to the worker that builds the message."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import psycopg
import pytest

from mailq import enqueue, enqueue_sync
from mailq.campaigns import Recipient, add_recipients, create_campaign
from mailq.compose.message import build_message
from mailq.db.claims import email_claim_due
from mailq.db.emails import COPY_THRESHOLD
from mailq.db.leases import WorkerIdentity, worker_lease_register
from mailq.kinds import ClaimPlan
from mailq.suppression import suppress
from tests.integration.test_campaigns import spring
from tests.support.emails import welcome
from tests.support.messages import strict_parse


@pytest.mark.parametrize("driver", ["asyncpg", "psycopg"])
@pytest.mark.parametrize("count", [2, COPY_THRESHOLD], ids=["insert", "copy"])
async def test_the_name_is_stored_apart_from_the_bare_address(
    driver: str, count: int, database_url: str, conn: asyncpg.Connection
) -> None:
    emails = [
        welcome(i, to=f"User {i} <user{i}@example.com>" if i % 2 else f"user{i}@example.com")
        for i in range(count)
    ]
    if driver == "asyncpg":
        await enqueue(conn, *emails)
    else:

        def sync() -> None:
            with psycopg.connect(database_url, autocommit=True) as pconn:
                enqueue_sync(pconn, *emails)

        await asyncio.to_thread(sync)
    rows = await conn.fetch("SELECT to_address, to_name FROM mailq.emails ORDER BY id LIMIT 2")
    assert [tuple(r) for r in rows] == [
        ("user0@example.com", None),
        ("user1@example.com", "User 1"),
    ]
    pending = await conn.fetchval(
        "SELECT to_address FROM mailq.pending ORDER BY id LIMIT 1 OFFSET 1"
    )
    assert pending == "user1@example.com"


async def test_suppression_matches_the_bare_address_of_a_mailbox(conn: asyncpg.Connection) -> None:
    ids = await enqueue(conn, welcome(1, to="Ann Lee <Ann@Example.com>"), welcome(2))
    result = await suppress(conn, ["Ann <ann@example.com>"], "asked to")
    assert (result.added, result.cancelled) == (1, 1)
    stored = await conn.fetchval("SELECT address FROM mailq.suppressions")
    assert stored == "ann@example.com"
    states = await conn.fetch("SELECT id, status FROM mailq.emails ORDER BY id")
    assert [(r["id"], r["status"]) for r in states] == [(ids[0], "cancelled"), (ids[1], "waiting")]


async def test_campaign_recipients_may_be_mailboxes_deduplicated_on_the_bare_address(
    conn: asyncpg.Connection,
) -> None:
    await suppress(conn, ["gone@example.com"], "bounced")
    recipients = [
        Recipient("Ann Lee <ann@example.com>", {"name": "Ann"}),
        {"email": '"Doe, Jane" <jane@example.com>', "context": {"name": "Jane"}},
        Recipient("Gone <Gone@example.com>", {"name": "Gone"}),
    ]
    campaign, added = await create_campaign(
        conn, spring(from_address="Acme News <news@acme.example.com>"), recipients
    )
    assert (added.added, added.duplicates, added.suppressed) == (3, 0, 1)
    again = await add_recipients(
        conn, campaign.id, [Recipient("A <ANN@example.com>", {"name": "x"})]
    )
    assert (again.added, again.duplicates) == (0, 1)
    rows = await conn.fetch(
        "SELECT to_address, to_name, status FROM mailq.emails ORDER BY lower(to_address)"
    )
    assert [tuple(r) for r in rows] == [
        ("ann@example.com", "Ann Lee", "waiting"),
        ("Gone@example.com", "Gone", "cancelled"),
        ("jane@example.com", "Doe, Jane", "waiting"),
    ]
    worker = WorkerIdentity(uuid.uuid4(), "t", 1, ("search_engine",), 16)
    await worker_lease_register(conn, worker, 30)
    claimed = await email_claim_due(conn, ClaimPlan(["search_engine"], [10], 10), worker.id)
    claimed.sort(key=lambda c: c.to)
    assert [(c.to, c.to_name) for c in claimed] == [
        ("ann@example.com", "Ann Lee"),
        ("jane@example.com", "Doe, Jane"),
    ]
    assert claimed[0].content["campaign_name"] == "Spring"
    message = strict_parse(build_message(claimed[1], feedback_sender_id="acme1").data)
    assert message["To"].addresses[0].display_name == "Doe, Jane"
    assert message["From"].addresses[0].display_name == "Acme News"
    assert message["List-Id"] == f"Spring <{campaign.id}.search_engine.acme.example.com>"
    assert message["Feedback-ID"] == f"{campaign.id}:search_engine:acme1"
    assert claimed[0].message_id.endswith("@acme.example.com>")
