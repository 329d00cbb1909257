"""The COPY paths of bulk enqueue and of campaign recipients: a refusal anywhere writes
nothing (and leaves the caller's transaction usable), de-duplication and suppression hold
across chunks, and the trigger-kept counts match the rows."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from mailq import Email, InvalidEmail, campaigns, enqueue
from mailq.campaigns import NewCampaign, Recipient
from mailq.db.emails import COPY_THRESHOLD
from mailq.enqueue import build_rows
from mailq.suppression import suppress
from tests.support.emails import campaign, welcome

# Counts by kind and state, as the triggers keep them and as the rows have them.
KEPT = "SELECT kind, state, count FROM mailq.queue_stats WHERE count <> 0"
NAIVE = """
    SELECT kind, mailq.email_state(status, run_at, attempts) AS state, count(*) AS count
    FROM mailq.emails GROUP BY 1, 2
"""
CAMPAIGN_KEPT = """
    SELECT state, count FROM mailq.campaign_progress WHERE campaign_id = $1 AND count <> 0
"""
CAMPAIGN_NAIVE = """
    SELECT mailq.email_state(status, run_at, attempts) AS state, count(*) AS count
    FROM mailq.emails WHERE campaign_id = $1 GROUP BY 1
"""


async def assert_counts_match_rows(conn: asyncpg.Connection) -> dict[tuple[str, str], int]:
    async with conn.transaction():  # one now() for both
        kept = {(r["kind"], r["state"]): r["count"] for r in await conn.fetch(KEPT)}
        naive = {(r["kind"], r["state"]): r["count"] for r in await conn.fetch(NAIVE)}
    assert kept == naive
    return kept


async def assert_campaign_counts(conn: asyncpg.Connection, campaign_id: int) -> dict[str, int]:
    kept = {r["state"]: r["count"] for r in await conn.fetch(CAMPAIGN_KEPT, campaign_id)}
    naive = {r["state"]: r["count"] for r in await conn.fetch(CAMPAIGN_NAIVE, campaign_id)}
    assert kept == naive
    return kept


async def test_a_refusal_late_in_a_bulk_enqueue_writes_nothing_and_the_transaction_goes_on(
    conn: asyncpg.Connection,
) -> None:
    n = COPY_THRESHOLD + 300
    emails = [welcome(i) for i in range(n)]
    emails[n - 5] = welcome(n - 5, to="broken")
    async with conn.transaction():
        await enqueue(conn, welcome(0, to="kept@example.com"))
        with pytest.raises(InvalidEmail, match=r"^to:"):
            await enqueue(conn, *emails)
        not_an_email: list[object] = [*emails[:600], "a@example.com"]
        with pytest.raises(TypeError, match=r"emails\[600\]"):
            await enqueue(conn, *not_an_email)  # type: ignore[arg-type]
        assert await conn.fetchval("SELECT count(*) FROM mailq.emails") == 1
    assert await conn.fetchval("SELECT to_address FROM mailq.emails") == "kept@example.com"
    assert await assert_counts_match_rows(conn) == {("welcome", "queued"): 1}


async def test_a_bulk_enqueue_keeps_order_and_counts_on_a_connection_and_a_pool(
    conn: asyncpg.Connection, database_url: str
) -> None:
    later = datetime.now(UTC) + timedelta(hours=1)
    emails = [
        campaign(i, send_at=later) if i % 3 == 0 else welcome(i, metadata={"n": i})
        for i in range(COPY_THRESHOLD + 100)
    ]
    ids = await enqueue(conn, *emails)
    async with asyncpg.create_pool(database_url, min_size=1, max_size=1) as pool:
        more = await enqueue(pool, *[welcome(i) for i in range(COPY_THRESHOLD)])
    assert ids == sorted(ids) and more == sorted(more) and ids[-1] < more[0]
    rows = await conn.fetch("SELECT id, to_address, metadata::text FROM mailq.emails")
    stored = {r["id"]: r["to_address"] for r in rows}
    assert [stored[i] for i in ids] == [f"user{i}@example.com" for i in range(len(emails))]
    assert (
        await conn.fetchval("SELECT count(*) FROM mailq.emails WHERE metadata @> '{\"n\": 4}'") == 1
    )
    assert await assert_counts_match_rows(conn) == {
        ("welcome", "queued"): len(emails) - 200 + COPY_THRESHOLD,
        ("search_engine", "scheduled"): 200,
    }


def spring(**fields: object) -> NewCampaign:
    base: dict[str, object] = {
        "name": "Spring",
        "kind": "search_engine",
        "send_at": datetime.now(UTC) + timedelta(hours=1),
        "subject": "News for {{ name }}",
        "text": "Hello {{ name }}",
    }
    base.update(fields)
    return NewCampaign(**base)  # type: ignore[arg-type]


def people(n: int, start: int = 0) -> Iterator[Recipient]:
    for i in range(start, start + n):
        yield Recipient(f"user{i}@example.com", {"name": f"User {i}"})


async def test_a_bad_recipient_in_a_later_chunk_writes_nothing(
    conn: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(campaigns.recipients, "CHUNK", 7)
    recipients = [*people(30), Recipient("nameless@example.com", {}), *people(5, 100)]
    with pytest.raises(InvalidEmail, match=r"recipients\[30\]\.context: the template uses name"):
        await campaigns.create_campaign(conn, spring(), recipients)
    existing, _ = await campaigns.create_campaign(conn, spring(), people(3))
    with pytest.raises(InvalidEmail, match=r"recipients\[22\]\.email"):
        await campaigns.add_recipients(conn, existing.id, [*people(22, 10), "not an address"])
    assert await conn.fetchval("SELECT count(*) FROM mailq.campaigns") == 1
    assert await conn.fetchval("SELECT count(*) FROM mailq.emails") == 3
    assert await assert_campaign_counts(conn, existing.id) == {"scheduled": 3}
    assert await assert_counts_match_rows(conn) == {("search_engine", "scheduled"): 3}


@pytest.mark.parametrize("filter_bits", [1 << 24, 8])
async def test_duplicates_and_suppressions_hold_across_chunks_and_the_counts_match(
    conn: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch, filter_bits: int
) -> None:
    # 8 bits: almost every address looks already written, and is looked up in the database.
    monkeypatch.setattr(campaigns.recipients, "CHUNK", 7)
    monkeypatch.setattr(campaigns.recipients, "_FILTER_BITS", filter_bits)
    await suppress(conn, ["user3@example.com", "USER12@example.com", "jösé@example.com"], "left")
    recipients: list[object] = [
        *people(10),
        "User5@Example.com",  # a duplicate of user5, in another chunk
        "Ann <ann@example.com>",
        *people(10, 10),
        "JÖSÉ@example.com",  # not ASCII: suppressed through lower() in Postgres
        "zoë@example.com",
        "ZOË@example.com",
        "ANN@example.com",
    ]
    shared = spring(context={"name": "friend"})
    new, added = await campaigns.create_campaign(conn, shared, recipients)  # type: ignore[arg-type]
    assert (added.added, added.duplicates, added.suppressed) == (23, 3, 3)
    again = await campaigns.add_recipients(
        conn, new.id, [*people(4, 18), "zoë@example.com", "ann@EXAMPLE.com", "bob@example.com"]
    )
    assert (again.added, again.duplicates, again.suppressed) == (3, 4, 0)
    rows = await conn.fetch(
        "SELECT lower(to_address) AS key, count(*) AS n FROM mailq.emails GROUP BY 1"
    )
    assert len(rows) == 26 and {r["n"] for r in rows} == {1}
    cancelled = await conn.fetch(
        "SELECT to_address, last_error, finished_at IS NOT NULL AS finished FROM mailq.emails"
        " WHERE status = 'cancelled' ORDER BY 1"
    )
    assert [tuple(r) for r in cancelled] == [
        ("JÖSÉ@example.com", "suppressed: left", True),
        ("user12@example.com", "suppressed: left", True),
        ("user3@example.com", "suppressed: left", True),
    ]
    names = await conn.fetchval(
        "SELECT to_name FROM mailq.emails WHERE to_address = 'ann@example.com'"
    )
    assert names == "Ann"
    assert await assert_campaign_counts(conn, new.id) == {"scheduled": 23, "cancelled": 3}
    assert await assert_counts_match_rows(conn) == {
        ("search_engine", "scheduled"): 23,
        ("search_engine", "cancelled"): 3,
    }


async def test_a_paused_campaign_takes_recipients_held(conn: asyncpg.Connection) -> None:
    new, _ = await campaigns.create_campaign(conn, spring(), people(2))
    await campaigns.pause_campaign(conn, new.id)
    added = await campaigns.add_recipients(conn, new.id, people(3, 1))
    assert (added.added, added.duplicates) == (2, 1)
    due = await conn.fetch("SELECT DISTINCT run_at FROM mailq.emails")
    assert [r["run_at"] for r in due] == [campaigns.recipients.PAUSED_UNTIL]
    assert await campaigns.resume_campaign(conn, new.id) == 4
    assert await assert_counts_match_rows(conn) == {("search_engine", "scheduled"): 4}


def test_an_email_list_is_checked_per_shape_also_when_built_from_shared_values() -> None:
    # The shape shortcut (the same string objects as the email before) refuses what the
    # full checks refuse, naming the field.
    subject, text = "Hi {{ name }}", "Dear {{ name }}"
    good = [
        Email(to=f"u{i}@example.com", subject=subject, text=text, context={"name": "x"})
        for i in range(3)
    ]
    bad = Email(to="v@example.com", subject=subject, text=text, context={"name": "a\nb"})
    assert len(build_rows(good)) == 3
    with pytest.raises(InvalidEmail, match=r"^context\.name: control characters"):
        build_rows([*good, bad])
    with pytest.raises(InvalidEmail, match=r"^subject: the template uses name"):
        build_rows([*good, Email(to="w@example.com", subject=subject, text=text)])


async def test_a_row_written_by_copy_is_the_row_the_insert_statement_writes(
    conn: asyncpg.Connection,
) -> None:
    # ASCII addresses go in by COPY (binary rows built in Python), the others through
    # email_insert_recipients: both give the same columns.
    await suppress(conn, ["gone@example.com", "göran@example.com"], "bounced")
    expires = datetime.now(UTC) + timedelta(days=3)
    new = spring(max_attempts=3, priority=7, expires_at=expires, context={"name": "you"})
    recipients = ["Ann <ann@example.com>", "Åsa <åsa@example.com>", "gone@example.com"]
    await campaigns.create_campaign(conn, new, [*recipients, "göran@example.com"])
    columns = (
        "kind, priority, run_at, send_at, max_attempts, campaign_id, status, content::text,"
        " expires_at, to_name, finished_at, last_error, attempts, metadata::text, created_at"
    )
    rows = await conn.fetch(f"SELECT {columns} FROM mailq.emails ORDER BY to_address")
    by_address = dict(zip(["ann", "gone", "göran", "åsa"], rows, strict=True))
    ann, asa, gone, goran = (dict(by_address[k]) for k in ("ann", "åsa", "gone", "göran"))
    assert ann.pop("to_name") == "Ann" and asa.pop("to_name") == "Åsa"
    assert ann == asa
    assert (ann["priority"], ann["max_attempts"], ann["expires_at"]) == (7, 3, expires)
    assert ann["run_at"] == ann["send_at"] == new.send_at
    assert gone == goran and gone["status"] == "cancelled"
    assert gone["last_error"] == "suppressed: bounced" and gone["finished_at"] is not None
