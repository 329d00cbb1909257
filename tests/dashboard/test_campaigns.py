"""Campaign pages, in-process over ASGI: a campaign the bounce breaker paused shows why, on the
list and on its page, with its bounce and complaint rates from the counts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx
import pytest
from asgi_lifespan import LifespanManager

from mailq.campaigns import NewCampaign, create_campaign, pause_campaign, resume_campaign
from mailq.service.app import create_app
from mailq.settings import Settings
from tests.dashboard.test_auth import ADMIN, CLIENT, sign_in

REASON = "hard bounce rate 6.1% over 520 sent (limit 5%)"


@pytest.fixture
async def client(database_url: str, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(
        database_url=database_url, home=tmp_path / "home", backend="null://",
        api_tokens=(CLIENT,), admin_tokens=(ADMIN,), secret_key="test-secret",
        embedded_worker=False,
    )  # fmt: skip
    async with LifespanManager(create_app(settings)) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://mailq.test") as http:
            yield http


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
