"""The bounce policy on a real Postgres: events matched to their emails, recorded once, hard
bounces and complaints suppressing, soft bounces past the threshold suppressing for a while,
refusals about the sender never suppressing, and a campaign pausing itself."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

import mailq
from mailq import campaigns
from mailq.bounces.events import Event, EventType, Subtype
from mailq.bounces.policy import BouncePolicy
from mailq.bounces.recorder import BounceRules, record_events
from mailq.campaigns import NewCampaign, Recipient
from mailq.suppression import find_suppressions
from tests.support.emails import welcome


async def sent(conn: asyncpg.Connection, *emails: mailq.Email) -> list[dict[str, Any]]:
    """Enqueue emails and mark them sent (as a worker would have)."""
    ids = await mailq.enqueue(conn, *emails)
    return await mark_sent(conn, ids)


async def mark_sent(conn: asyncpg.Connection, ids: list[int]) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "UPDATE mailq.emails SET status = 'sent', attempts = 1, finished_at = now() "
        "WHERE id = ANY($1::bigint[]) RETURNING id, message_id, to_address",
        ids,
    )
    return sorted((dict(r) for r in rows), key=lambda r: r["id"])


def bounce(email_id: int | None, n: int = 0, **fields: Any) -> Event:
    values: dict[str, Any] = {
        "type": EventType.BOUNCED,
        "provider": "dsn",
        "subtype": Subtype.HARD,
        "status": "5.1.1",
        "diagnostic": "550 5.1.1 user unknown",
        "email_id": email_id,
        "provider_event_id": f"report-{n}",
    }
    values.update(fields)
    return Event(**values)


async def state(conn: asyncpg.Connection, email_id: int) -> str:
    row = await conn.fetchrow("SELECT status, last_error FROM mailq.emails WHERE id = $1", email_id)
    return f"{row['status']}: {row['last_error']}"


async def test_a_hard_bounce_suppresses_and_is_recorded_once(conn: asyncpg.Connection) -> None:
    (email,) = await sent(conn, welcome(1, to="Gone <gone@example.com>"))
    [waiting] = await mailq.enqueue(conn, welcome(2, to="GONE@example.com"))
    first = await record_events(conn, [bounce(email["id"], recipient="gone@example.com")])
    again = await record_events(conn, [bounce(email["id"], recipient="gone@example.com")])
    assert (first.recorded, first.suppressed, again.recorded, again.duplicates) == (
        1,
        ["gone@example.com"],
        0,
        1,
    )
    found = await find_suppressions(conn, ["gone@example.com"])
    reason = found["gone@example.com"].reason
    assert "hard bounce" in reason and "5.1.1" in reason
    assert found["gone@example.com"].expires_at is None
    assert (await state(conn, waiting)).startswith("cancelled: suppressed: hard bounce")
    rows = await conn.fetch(
        "SELECT kind, type, subtype FROM mailq.events WHERE email_id = $1", email["id"]
    )
    assert [tuple(r) for r in rows] == [("welcome", "bounced", "hard")]


async def test_a_complaint_matched_by_message_id_suppresses(conn: asyncpg.Connection) -> None:
    (email,) = await sent(conn, welcome(3))
    complaint = Event(
        type=EventType.COMPLAINED,
        provider="arf",
        recipient=None,  # redacted by the mailbox provider
        message_id=email["message_id"],
        feedback_type="abuse",
        provider_event_id="fbl-1",
    )
    result = await record_events(conn, [complaint])
    assert result.suppressed == [email["to_address"].lower()]
    row = await conn.fetchrow("SELECT email_id, type FROM mailq.events")
    assert (row["email_id"], row["type"]) == (email["id"], "complained")


async def test_three_soft_bounces_suppress_for_thirty_days(conn: asyncpg.Connection) -> None:
    (email,) = await sent(conn, welcome(4, to="full@example.com"))
    soft = {"subtype": Subtype.SOFT, "status": "4.2.2", "recipient": "full@example.com"}
    for n in range(2):
        result = await record_events(conn, [bounce(email["id"], n, **soft)])
        assert result.suppressed == []
    result = await record_events(conn, [bounce(email["id"], 2, **soft)])
    assert result.suppressed == ["full@example.com"]
    entry = (await find_suppressions(conn, ["full@example.com"]))["full@example.com"]
    assert entry.expires_at is not None
    left = entry.expires_at - datetime.now(UTC)
    assert timedelta(days=29) < left <= timedelta(days=30)
    assert "3 soft bounces" in entry.reason
    # Once it has expired the address is no longer suppressed; a hard bounce then makes it
    # permanent.
    await conn.execute("UPDATE mailq.suppressions SET expires_at = now() - interval '1 second'")
    assert await find_suppressions(conn, ["full@example.com"]) == {}
    await record_events(conn, [bounce(email["id"], 9, recipient="full@example.com")])
    assert (await find_suppressions(conn, ["full@example.com"]))[
        "full@example.com"
    ].expires_at is None


async def test_a_refusal_about_the_sender_suppresses_nobody(conn: asyncpg.Connection) -> None:
    (email,) = await sent(conn, welcome(5, to="fine@example.com"))
    [waiting] = await mailq.enqueue(conn, welcome(6, to="fine@example.com"))
    unauthenticated = bounce(
        email["id"],
        status="5.7.26",
        diagnostic="550-5.7.26 This mail is unauthenticated",
        sender_side=True,
        recipient="fine@example.com",
    )
    result = await record_events(conn, [unauthenticated])
    assert (result.recorded, result.suppressed) == (1, [])
    assert await find_suppressions(conn, ["fine@example.com"]) == {}
    assert (await state(conn, waiting)).startswith("waiting")
    outcome = await conn.fetchval("SELECT outcome FROM mailq.event_counts")
    assert outcome == "rejected"  # counted toward the breaker, not as the recipient's bounce


async def test_an_unmatched_dsn_is_kept_but_suppresses_nobody(conn: asyncpg.Connection) -> None:
    result = await record_events(conn, [bounce(None, recipient="stranger@example.com")])
    assert (result.recorded, result.unmatched, result.suppressed) == (1, 1, [])


async def test_a_campaign_pauses_itself_past_five_percent_hard_bounces(
    conn: asyncpg.Connection,
) -> None:
    recipients = [Recipient(f"r{i}@example.com", {}) for i in range(110)]
    new = NewCampaign(
        name="Spring",
        kind="search_engine",
        send_at=datetime.now(UTC) - timedelta(seconds=1),
        subject="News",
        text="Hello",
    )
    campaign, _ = await campaigns.create_campaign(conn, new, recipients)
    ids = [
        r["id"]
        for r in await conn.fetch(
            "SELECT id FROM mailq.emails WHERE campaign_id = $1 ORDER BY id", campaign.id
        )
    ]
    await mark_sent(conn, ids[:100])
    rules = BounceRules(BouncePolicy(pause_min_sent=100))
    five = [bounce(i, n) for n, i in enumerate(ids[:5])]
    result = await record_events(conn, five, rules)
    assert (result.recorded, result.paused_campaigns) == (5, {})  # 5% is the limit, not over
    result = await record_events(conn, [bounce(ids[5], 5)], rules)
    reason = result.paused_campaigns[campaign.id]
    assert "hard-bounce rate 6.0% (6 of 100 sent) is over 5.0%" in reason
    assert (await campaigns.get_campaign(conn, campaign.id)).status == "paused"
    held = await conn.fetchval(
        "SELECT count(*) FROM mailq.emails WHERE campaign_id = $1 AND status = 'waiting' "
        "AND run_at = '9999-12-31 00:00:00+00'",
        campaign.id,
    )
    assert held == 10
    stored = await conn.fetchval("SELECT reason FROM mailq.bounce_breakers")
    assert stored == reason
    # Resumed by an operator, the breaker judges only what comes after.
    await campaigns.resume_campaign(conn, campaign.id)
    result = await record_events(conn, [bounce(ids[6], 6)], rules)
    assert result.paused_campaigns == {}


async def test_a_provider_event_is_matched_by_the_message_id_recorded_at_send(
    conn: asyncpg.Connection,
) -> None:
    (email,) = await sent(conn, welcome(7, to="esp@example.com"))
    await conn.execute(
        "INSERT INTO mailq.attempts (email_id, attempt, started_at, outcome, provider_message_id)"
        " VALUES ($1, 1, now(), 'sent', 'pm-0001')",
        email["id"],
    )
    delivered = Event(
        type=EventType.DELIVERED,
        provider="postmark",
        recipient="esp@example.com",
        provider_message_id="pm-0001",
        provider_event_id="delivery/pm-0001",
    )
    result = await record_events(conn, [delivered])
    assert (result.recorded, result.unmatched, result.suppressed) == (1, 0, [])
    row = await conn.fetchrow("SELECT email_id, kind FROM mailq.events")
    assert tuple(row) == (email["id"], "welcome")


async def test_a_kind_past_the_limits_is_warned_about_never_paused(
    conn: asyncpg.Connection,
) -> None:
    emails = await sent(conn, *(welcome(20 + i) for i in range(10)))
    rules = BounceRules(BouncePolicy(pause_min_sent=10))
    refused = bounce(emails[0]["id"], 0, status="5.7.515", sender_side=True)
    first = await record_events(conn, [refused], rules)
    assert "hard-bounce rate 10.0% (1 of 10 sent)" in first.kind_warnings["welcome"]
    assert "not paused" in first.kind_warnings["welcome"]
    again = await record_events(conn, [bounce(emails[1]["id"], 1, sender_side=True)], rules)
    assert again.kind_warnings == {}  # warned once a day, not at every bounce
    assert await conn.fetchval("SELECT count(*) FROM mailq.paused_kinds") == 0
    assert await find_suppressions(conn, [e["to_address"] for e in emails[:2]]) == {}
