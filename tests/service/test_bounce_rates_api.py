"""A campaign the bounce breaker paused, as every surface shows it: `GET /v1/campaigns/{id}`
(status, reason, rates), `GET /v1/stats` (per kind and per campaign), `/metrics`, `mailq status
--json` and the psql view mailq.bounces."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest

from mailq import campaigns
from mailq.bounces.policy import BouncePolicy
from mailq.bounces.recorder import BounceRules, record_events
from mailq.campaigns import NewCampaign, Recipient
from mailq.cli.main import main
from tests.bounces.test_policy import bounce, mark_sent

from .conftest import AS_ADMIN


async def test_a_paused_campaign_shows_its_reason_and_rates_everywhere(
    client: httpx.AsyncClient,
    conn: asyncpg.Connection,
    database_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    new = NewCampaign(
        name="Autumn",
        kind="search_engine",
        send_at=datetime.now(UTC) - timedelta(seconds=1),
        subject="News",
        text="Hello",
    )
    recipients = [Recipient(f"a{i}@example.com", {}) for i in range(50)]
    campaign, _ = await campaigns.create_campaign(conn, new, recipients)
    ids = [
        r["id"]
        for r in await conn.fetch(
            "SELECT id FROM mailq.emails WHERE campaign_id = $1 ORDER BY id", campaign.id
        )
    ]
    await mark_sent(conn, ids[:40])
    rules = BounceRules(BouncePolicy(pause_min_sent=40))
    result = await record_events(conn, [bounce(i, n) for n, i in enumerate(ids[:3])], rules)
    assert campaign.id in result.paused_campaigns  # 3 of 40 = 7.5%

    shown = (await client.get(f"/v1/campaigns/{campaign.id}", headers=AS_ADMIN)).json()
    assert shown["status"] == "paused"
    assert "hard-bounce rate 7.5% (3 of 40 sent)" in shown["paused_reason"]
    assert (shown["rates"]["sent"], shown["rates"]["hard_bounced"]) == (40, 3)
    assert shown["rates"]["hard_bounce_rate"] == pytest.approx(0.075)

    stats = (await client.get("/v1/stats", headers=AS_ADMIN)).json()
    kind = stats["kinds"]["search_engine"]["rates"]
    assert (kind["sent"], kind["bounced"], kind["hard_bounce_rate"]) == (40, 3, 0.075)
    assert [(c["id"], c["rates"]["hard_bounced"]) for c in stats["campaigns"]] == [(campaign.id, 3)]

    metrics = (await client.get("/metrics")).text
    assert (
        f'mailq_campaign_bounce_paused{{campaign="{campaign.id}",reason="hard_bounce_rate"}} 1.0'
        in metrics
    )
    assert 'mailq_hard_bounce_rate{campaign="",kind="search_engine"} 0.075' in metrics

    view = await conn.fetchrow(
        "SELECT sent, hard_bounced, hard_bounce_rate FROM mailq.bounces "
        "WHERE scope = 'campaign' AND campaign_id = $1",
        campaign.id,
    )
    assert tuple(view) == (40, 3, 0.075)

    argv = ["status", "--json", "--database-url", database_url]
    assert await asyncio.to_thread(main, argv) == 0  # main() runs its own event loop
    report = json.loads(capsys.readouterr().out)["bounces"]
    assert report["kinds"]["search_engine"]["hard_bounced"] == 3
    assert report["paused_by_bounces"][0]["campaign_id"] == campaign.id
