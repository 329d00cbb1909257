"""Campaign pages, in-process over ASGI: a campaign the bounce breaker paused shows why, on the
list and on its page, with its bounce and complaint rates from the counts, against the pause
limits of MAILQ_CONFIG's `[bounces]`; the overview's campaigns agree with their progress."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import pytest
from asgi_lifespan import LifespanManager

from mailq.bounces.policy import BouncePolicy
from mailq.bounces.recorder import BounceRules
from mailq.campaigns import (
    NewCampaign,
    create_campaign,
    get_campaign,
    pause_campaign,
    resume_campaign,
)
from mailq.config import Config
from mailq.db.dashboard import dashboard_campaign_progress
from mailq.service.app import create_app
from mailq.service.dashboard import campaigns as campaigns_page
from mailq.service.dashboard import deliverability, overview
from mailq.settings import Settings
from tests.dashboard.test_auth import ADMIN, CLIENT, sign_in

REASON = "hard bounce rate 6.1% over 520 sent (limit 5%)"


Serve = Callable[[Config], AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
def serve(database_url: str, tmp_path: Path) -> Serve:
    """A signed-out client of a service with MAILQ_CONFIG `config`."""

    @asynccontextmanager
    async def serving(config: Config) -> AsyncIterator[httpx.AsyncClient]:
        settings = Settings(
            database_url=database_url, home=tmp_path / "home", backend="null://",
            api_tokens=(CLIENT,), admin_tokens=(ADMIN,), secret_key="test-secret",
            embedded_worker=False,
        )  # fmt: skip
        async with LifespanManager(create_app(settings, config=config)) as manager:
            transport = httpx.ASGITransport(app=manager.app)
            base_url = "http://mailq.test"
            async with httpx.AsyncClient(transport=transport, base_url=base_url) as http:
                yield http

    return serving


@pytest.fixture
async def client(serve: Serve) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(Config()) as http:
        yield http


async def _campaign(conn: asyncpg.Connection, name: str, send_at: datetime, n: int) -> int:
    campaign, _ = await create_campaign(
        conn,
        NewCampaign(name=name, kind="search_engine", send_at=send_at, subject="Hi", text="Hi"),
        [f"{name}{i}@example.com" for i in range(n)],
        default_from="news@example.com",
    )
    return campaign.id


async def test_a_campaign_paused_by_the_bounce_breaker_says_why(
    conn: asyncpg.Connection, client: httpx.AsyncClient
) -> None:
    campaign, _ = await create_campaign(
        conn,
        NewCampaign(
            name="Launch", kind="search_engine", send_at=datetime.now(UTC), subject="Hi", text="Hi"
        ),
        [f"r{i}@example.com" for i in range(3)],
        default_from="news@example.com",
    )
    await conn.execute(
        "INSERT INTO mailq.bounce_breakers (scope, key, reason, tripped_at, sent, hard_bounced, "
        "complained) VALUES ('campaign', $1, $2, now(), 520, 32, 0)",
        str(campaign.id),
        REASON,
    )
    await sign_in(client, ADMIN)
    await pause_campaign(conn, campaign.id)
    for path in ("/dashboard/campaigns", f"/dashboard/campaigns/{campaign.id}"):
        page = await client.get(path)
        assert page.status_code == 200 and REASON in page.text, path
    # Resumed by an operator: the breaker's row stays (it judges what is sent since), the
    # reason no longer shows.
    await resume_campaign(conn, campaign.id)
    for path in ("/dashboard/campaigns", f"/dashboard/campaigns/{campaign.id}"):
        assert REASON not in (await client.get(path)).text, path


async def test_the_overview_shows_campaigns_from_their_counts(conn: asyncpg.Connection) -> None:
    """Open emails are the recipients less the finished ones: sending and unknown ones are
    counted, the others are `waiting` (`scheduled` before the send_at)."""
    now = datetime.now(UTC)
    going = await _campaign(conn, "going", now - timedelta(minutes=1), 6)
    later = await _campaign(conn, "later", now + timedelta(hours=1), 3)
    ids = [r["id"] for r in await conn.fetch(
        "SELECT id FROM mailq.emails WHERE campaign_id = $1 ORDER BY id", going
    )]  # fmt: skip
    await conn.execute(
        "UPDATE mailq.emails SET status = 'sent', attempts = 1, finished_at = now() "
        "WHERE id = ANY($1::bigint[])",
        ids[:2],
    )
    await conn.execute(
        "UPDATE mailq.emails SET status = 'unknown', attempts = 1 WHERE id = $1", ids[2]
    )
    # A failed one retried by an operator is open again.
    await conn.execute(
        "UPDATE mailq.emails SET status = 'failed', attempts = 1, finished_at = now() "
        "WHERE id = $1",
        ids[3],
    )
    await conn.execute(
        "UPDATE mailq.emails SET status = 'waiting', finished_at = NULL WHERE id = $1", ids[3]
    )
    shown = {c["id"]: c for c in (await overview.snapshot(conn))["campaigns"]}
    assert shown[going]["progress"] == {"sent": 2, "unknown": 1, "waiting": 3}
    assert shown[later]["progress"] == {"scheduled": 3}
    for campaign_id, entry in shown.items():
        exact = (await get_campaign(conn, campaign_id)).progress
        assert entry["total"] == sum(exact.values())
        assert entry["finished"] == sum(exact.get(s, 0) for s in overview.FINISHED_STATES)
    assert (shown[going]["finished"], shown[going]["remaining"]) == (2, 4)
    counted = await dashboard_campaign_progress(conn, [going, later])
    assert counted == {i: shown[i]["progress"] for i in (going, later)}
    await conn.execute("UPDATE mailq.emails SET status = 'cancelled', finished_at = now() "
                       "WHERE campaign_id = $1 AND status = 'waiting'", later)  # fmt: skip
    assert later not in {c["id"] for c in (await overview.snapshot(conn))["campaigns"]}


def test_the_gauges_draw_the_pause_limits_of_the_config() -> None:
    rules = BounceRules(
        BouncePolicy(pause_hard_bounce_rate=0.02, pause_complaint_rate=0.002),
        {"search_engine": BouncePolicy(pause_hard_bounce_rate=0.01, pause_min_sent=50)},
    )
    row = {"sent": 100, "delivered": 90, "hard_bounced": 1, "soft_bounced": 0, "rejected": 0,
           "complained": 0, "unsubscribed": 0}  # fmt: skip
    both, welcome, search = deliverability.kind_rates(
        [{**row, "kind": "welcome"}, {**row, "kind": "search_engine"}], rules
    )
    assert (both.name, welcome.name, search.name) == ("all kinds", "welcome", "search_engine")
    # 1% hard bounces: under the default's 2%, at the search_engine kind's own 1%.
    assert (welcome.bounce_gauge.level, search.bounce_gauge.level) == ("ok", "bad")
    assert (welcome.judged, search.judged) == (False, True)
    labels = [label for _, label in welcome.complaint_gauge.marks]
    assert labels == ["Gmail 0.1%", "pause limit", "Gmail 0.3%"]
    labels = [label for _, label in search.complaint_gauge.marks]
    assert labels == ["Gmail 0.1%", "Gmail 0.3%, pause limit"]


async def test_the_campaign_page_says_when_the_configured_limits_apply(
    conn: asyncpg.Connection, serve: Serve
) -> None:
    campaign_id = await _campaign(conn, "launch", datetime.now(UTC), 2)
    config = Config(bounces=BouncePolicy(pause_min_sent=1234, pause_hard_bounce_rate=0.02))
    async with serve(config) as http:
        await sign_in(http, ADMIN)
        page = await http.get(f"/dashboard/campaigns/{campaign_id}")
    assert page.status_code == 200
    assert "The pause limits apply from 1,234 sent emails on." in page.text
    assert (
        "pause limits (2.0% hard bounces and refusals of the sender, 0.30% complaints, "
        "from 1,234 sent on)" in page.text
    )


async def test_a_campaign_with_many_open_emails_is_shown_from_its_counts(
    conn: asyncpg.Connection, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    campaign_id = await _campaign(conn, "big", datetime.now(UTC) - timedelta(minutes=1), 4)
    await sign_in(client, ADMIN)
    page = await client.get(f"/dashboard/campaigns/{campaign_id}")
    assert "queued" in page.text and "counted from the campaign's recipients" not in page.text
    monkeypatch.setattr(campaigns_page, "EXACT_OPEN_MAX", 3)
    page = await client.get(f"/dashboard/campaigns/{campaign_id}")
    assert page.status_code == 200
    assert "Waiting: queued or retrying, counted from the campaign's recipients" in page.text
    assert '<span class="tile-n">4</span><span class="tile-label">recipients</span>' in page.text
