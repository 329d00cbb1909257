"""MAILQ_CONFIG at the edge: its kinds are the ones requests may name (anything else is 422,
naming the field), and its named templates work over HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from asgi_lifespan import LifespanManager

from mailq.config import Config, load_config
from mailq.service.app import create_app
from mailq.settings import Settings
from tests.service.conftest import AS_ADMIN, AS_CLIENT, email


@pytest.fixture
def config(tmp_path: Path) -> Config:
    folder = tmp_path / "templates" / "digest"
    folder.mkdir(parents=True)
    (folder / "subject.txt").write_text("Your digest, {{ name }}")
    (folder / "text.txt").write_text("{{ count }} new items for {{ name }}")
    path = tmp_path / "mailq.toml"
    path.write_text(
        'templates = "templates"\n\n[kinds.newsletter]\npriority = 6\ntemplate = "digest"\n'
        "list_unsubscribe = true\n"
    )
    return load_config(path)


@pytest.fixture
async def configured(settings: Settings, config: Config) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, config=config)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            yield http


async def test_unknown_kinds_are_422_naming_the_field(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    one = await client.post("/v1/emails", json=email(kind="newsletter"), headers=AS_CLIENT)
    assert one.status_code == 422
    assert one.json()["error"].startswith("kind: 'newsletter' is not a configured kind")
    assert "welcome" in one.json()["error"]
    batch = await client.post(
        "/v1/emails/batch",
        json={"emails": [email(1), email(2, kind="newsletter")]},
        headers=AS_CLIENT,
    )
    assert batch.status_code == 422
    assert batch.json()["error"].startswith("emails[1].kind:")
    assert await conn.fetchval("SELECT count(*) FROM mailq.emails") == 0


async def test_configured_kinds_and_named_templates_work_over_http(
    configured: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    by_kind = await configured.post(
        "/v1/emails",
        json={"to": "a@example.com", "kind": "newsletter", "context": {"name": "A", "count": 3}},
        headers=AS_CLIENT,
    )
    assert by_kind.status_code == 201, by_kind.text
    named = await configured.post(
        "/v1/emails",
        json={"to": "b@example.com", "template": "digest", "context": {"name": "B", "count": 1}},
        headers=AS_CLIENT,
    )
    assert named.status_code == 201, named.text
    lacking = await configured.post(
        "/v1/emails",
        json={"to": "c@example.com", "template": "digest", "context": {"name": "C"}},
        headers=AS_CLIENT,
    )
    assert lacking.status_code == 422 and "count" in lacking.json()["error"]
    row = await conn.fetchrow(
        "SELECT kind, priority, content->>'subject' AS subject FROM mailq.emails WHERE id = $1",
        by_kind.json()["id"],
    )
    assert (row["kind"], row["priority"]) == ("newsletter", 6)
    assert row["subject"] == "Your digest, {{ name }}"

    campaign = await configured.post(
        "/v1/campaigns",
        json={
            "name": "Weekly",
            "kind": "newsletter",
            "template": "digest",
            "context": {"count": 9},
            "recipients": [{"email": "d@example.com", "context": {"name": "D"}}],
        },
        headers=AS_CLIENT,
    )
    assert campaign.status_code == 201, campaign.text
    missing = await configured.post(
        "/v1/campaigns",
        json={
            "name": "Weekly",
            "kind": "newsletter",
            "template": "digest",
            "recipients": [{"email": "d@example.com", "context": {"name": "D"}}],
        },
        headers=AS_CLIENT,
    )
    assert missing.status_code == 422
    assert missing.json()["error"].startswith("recipients[0].context")
    paused = await configured.post("/v1/kinds/newsletter/pause", headers=AS_ADMIN)
    assert paused.status_code == 200
