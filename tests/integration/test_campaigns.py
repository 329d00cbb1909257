"""Campaigns on a real Postgres: streamed inserts, duplicates, per-recipient checks,
suppressed recipients, pause/resume/cancel, progress, and `mailq campaign create --csv`."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from mailq import InvalidEmail, campaigns
from mailq.campaigns import NewCampaign, Recipient
from mailq.cli.main import main
from mailq.compose.message import build_message
from mailq.db.claims import email_claim_due
from mailq.db.emails import email_delete_finished, email_finish
from mailq.db.leases import WorkerIdentity, worker_lease_register
from mailq.errors import CampaignClosed, CampaignNotFound
from mailq.kinds import ClaimPlan
from mailq.suppression import suppress

SOON = timedelta(seconds=2)


def spring(send_at: datetime | None = None, **fields: object) -> NewCampaign:
    base: dict[str, object] = {
        "name": "Spring",
        "kind": "search_engine",
        "send_at": send_at or datetime.now(UTC) - SOON,
        "context": {"product": "Search"},
    }
    base.update(fields)
    return NewCampaign(**base)  # type: ignore[arg-type]


def people(n: int, start: int = 0) -> Iterator[Recipient]:
    for i in range(start, start + n):
        yield Recipient(f"user{i}@example.com", {"name": f"User {i}"})


async def claim_all(conn: asyncpg.Connection) -> list[object]:
    worker = WorkerIdentity(uuid.uuid4(), "t", 1, ("search_engine",), 16)
    await worker_lease_register(conn, worker, 30)
    plan = ClaimPlan(["search_engine"], [1000], 1000)
    return await email_claim_due(conn, plan, worker.id)  # type: ignore[return-value]


async def test_recipients_stream_in_chunks_and_duplicates_are_counted(
    conn: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(campaigns.recipients, "CHUNK", 7)
    recipients = [*people(20), Recipient("USER3@example.com", {"name": "again"}), "x@example.com"]
    plain = spring(subject="News", text="Hello")
    campaign, added = await campaigns.create_campaign(conn, plain, iter(recipients))
    assert (added.added, added.duplicates) == (21, 1)
    again = await campaigns.add_recipients(conn, campaign.id, [*people(5, 18), "X@example.com"])
    assert (again.added, again.duplicates) == (3, 3)
    progress = (await campaigns.get_campaign(conn, campaign.id)).progress
    assert progress == {"queued": 24}
    ids = await conn.fetch("SELECT DISTINCT message_id FROM mailq.emails")
    assert len(ids) == 24
    stored_send_at = await conn.fetchval(
        "SELECT DISTINCT send_at FROM mailq.emails WHERE campaign_id = $1", campaign.id
    )
    assert stored_send_at == campaign.send_at


async def test_a_claimed_campaign_email_has_the_shared_content_and_its_own_context(
    conn: asyncpg.Connection,
) -> None:
    new = spring(subject="{{ product }} for {{ name }}", text="Hi {{ name }}")
    await campaigns.create_campaign(conn, new, people(1))
    (email,) = await claim_all(conn)
    message = build_message(email)  # type: ignore[arg-type]
    assert b"Subject: Search for User 0" in message.data
    assert email.campaign_id is not None  # type: ignore[attr-defined]


async def test_a_recipient_missing_a_variable_refuses_the_whole_campaign(
    conn: asyncpg.Connection,
) -> None:
    recipients = [*people(3), Recipient("nameless@example.com", {}), *people(2, 10)]
    with pytest.raises(InvalidEmail, match=r"recipients\[3\]\.context: the template uses name"):
        await campaigns.create_campaign(conn, spring(), recipients)
    with pytest.raises(InvalidEmail, match=r"recipients\[1\]\.email"):
        await campaigns.create_campaign(
            conn, spring(subject="News", text="Hi"), ["a@example.com", "not an address"]
        )
    with pytest.raises(InvalidEmail, match=r"recipients\[0\]\.context\.name: control"):
        await campaigns.create_campaign(
            conn, spring(), [Recipient("a@example.com", {"name": "x\nBcc: e@example.com"})]
        )
    assert await conn.fetchval("SELECT count(*) FROM mailq.campaigns") == 0
    assert await conn.fetchval("SELECT count(*) FROM mailq.emails") == 0


async def test_suppressed_recipients_are_stored_cancelled_with_the_reason(
    conn: asyncpg.Connection,
) -> None:
    await suppress(conn, ["User1@example.com"], "unsubscribed")
    campaign, added = await campaigns.create_campaign(conn, spring(), people(3))
    assert (added.added, added.suppressed) == (3, 1)
    reason = await conn.fetchval(
        "SELECT last_error FROM mailq.emails WHERE to_address = 'user1@example.com'"
    )
    assert reason == "suppressed: unsubscribed"
    assert (await campaigns.get_campaign(conn, campaign.id)).progress == {
        "queued": 2,
        "cancelled": 1,
    }


async def test_suppressing_an_address_later_cancels_its_waiting_emails_in_every_campaign(
    conn: asyncpg.Connection,
) -> None:
    first, _ = await campaigns.create_campaign(conn, spring(name="First"), people(3))
    second, _ = await campaigns.create_campaign(conn, spring(name="Second"), people(3, 1))
    await conn.execute(
        "INSERT INTO mailq.emails (kind, to_address, message_id, content) "
        "VALUES ('welcome', 'User1@Example.com', '<w1@x>', '{}')"
    )
    # One of them already went out: a sent email stays sent.
    await conn.execute(
        "UPDATE mailq.emails SET status = 'sent', attempts = 1, finished_at = now() "
        "WHERE campaign_id = $1 AND to_address = 'user2@example.com'",
        second.id,
    )
    await suppress(conn, ["USER1@example.com", "user2@example.com"], "unsubscribed")
    rows = await conn.fetch(
        "SELECT campaign_id, lower(to_address) AS address, status FROM mailq.emails "
        "WHERE lower(to_address) IN ('user1@example.com', 'user2@example.com') "
        "ORDER BY campaign_id NULLS FIRST, address"
    )
    assert [tuple(r) for r in rows] == [
        (None, "user1@example.com", "cancelled"),
        (first.id, "user1@example.com", "cancelled"),
        (first.id, "user2@example.com", "cancelled"),
        (second.id, "user1@example.com", "cancelled"),
        (second.id, "user2@example.com", "sent"),
    ]
    assert (await campaigns.get_campaign(conn, first.id)).progress == {
        "queued": 1,
        "cancelled": 2,
    }


async def test_pause_resume_and_cancel(conn: asyncpg.Connection) -> None:
    campaign, _ = await campaigns.create_campaign(conn, spring(), people(5))
    assert await campaigns.pause_campaign(conn, campaign.id) == 5
    assert await claim_all(conn) == []
    paused = await campaigns.get_campaign(conn, campaign.id)
    assert paused.status == "paused" and paused.progress == {"scheduled": 5}
    added = await campaigns.add_recipients(conn, campaign.id, people(1, 100))
    assert added.added == 1 and await claim_all(conn) == []
    assert await campaigns.resume_campaign(conn, campaign.id) == 6
    claimed = await claim_all(conn)
    assert len(claimed) == 6
    assert await campaigns.cancel_campaign(conn, campaign.id) == 0  # all in flight
    with pytest.raises(CampaignClosed):
        await campaigns.add_recipients(conn, campaign.id, people(1, 200))
    with pytest.raises(CampaignClosed):
        await campaigns.resume_campaign(conn, campaign.id)
    with pytest.raises(CampaignNotFound):
        await campaigns.pause_campaign(conn, 999_999)


async def test_cancel_turns_what_is_not_sent_into_cancelled(conn: asyncpg.Connection) -> None:
    later = datetime.now(UTC) + timedelta(hours=1)
    campaign, _ = await campaigns.create_campaign(conn, spring(later), people(4))
    assert await campaigns.cancel_campaign(conn, campaign.id) == 4
    rows = await conn.fetch(
        "SELECT state, count FROM mailq.campaign_progress WHERE campaign_id = $1", campaign.id
    )
    assert [(r["state"], r["count"]) for r in rows] == [("cancelled", 4)]
    listed = await campaigns.list_campaigns(conn)
    assert [(c.id, c.status) for c in listed] == [(campaign.id, "cancelled")]


async def test_progress_outlives_pruned_emails(conn: asyncpg.Connection) -> None:
    campaign, _ = await campaigns.create_campaign(conn, spring(), people(2))
    await campaigns.cancel_campaign(conn, campaign.id)
    await email_delete_finished(conn, datetime.now(UTC) + timedelta(days=1), 100)
    assert (await campaigns.get_campaign(conn, campaign.id)).progress == {"cancelled": 2}


def test_campaign_create_from_csv(
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    csv = tmp_path / "people.csv"
    csv.write_text(
        "email,name,city\nann@example.com,Ann,Oslo\nbob@example.com,Bob,\nANN@example.com,A,B\n"
    )
    monkeypatch.setenv("MAILQ_DATABASE_URL", database_url)
    monkeypatch.delenv("MAILQ_CONFIG", raising=False)
    args = ["campaign", "create", "--csv", str(csv), "--name", "Launch", "--kind",
            "portfolio_builder", "--send-at", "2030-01-01T09:00:00Z"]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "2 recipients, 1 duplicates ignored" in out
    bad = tmp_path / "bad.csv"
    bad.write_text("email,name\nann@example.com\n")  # the template needs name: empty is ok
    assert main([*args[:3], str(bad), *args[4:]]) == 0
    missing = tmp_path / "missing.csv"
    missing.write_text("address\nann@example.com\n")
    assert main([*args[:3], str(missing), *args[4:]]) == 2
    assert "column" in capsys.readouterr().err


async def test_a_retry_follows_its_campaign_paused_or_cancelled_meanwhile(
    conn: asyncpg.Connection,
) -> None:
    from mailq.models import AttemptResult, Outcome

    campaign, _ = await campaigns.create_campaign(conn, spring(), people(2))
    claimed = await claim_all(conn)
    await campaigns.pause_campaign(conn, campaign.id)
    worker_id = await conn.fetchval("SELECT worker_id FROM mailq.emails LIMIT 1")
    first, second = claimed
    result = AttemptResult(first, Outcome.RETRY, datetime.now(UTC), 451, "later", "x", 1.0)  # type: ignore[arg-type]
    assert await email_finish(conn, [result], worker_id)
    assert (await campaigns.get_campaign(conn, campaign.id)).progress["retrying"] == 1
    due = await conn.fetchval("SELECT run_at FROM mailq.emails WHERE id = $1", first.id)  # type: ignore[attr-defined]
    assert due.year == 9999
    await campaigns.cancel_campaign(conn, campaign.id)
    result = AttemptResult(second, Outcome.RETRY, datetime.now(UTC), 451, "later", "x", 1.0)  # type: ignore[arg-type]
    await email_finish(conn, [result], worker_id)
    progress = (await campaigns.get_campaign(conn, campaign.id)).progress
    assert progress == {"cancelled": 2}
