"""Kind pause and resume over HTTP (the emergency stop), and kinds from MAILQ_CONFIG."""

from __future__ import annotations

import asyncpg
import httpx

from tests.service.conftest import AS_ADMIN


async def paused(conn: asyncpg.Connection) -> list[str]:
    return [r["kind"] for r in await conn.fetch("SELECT kind FROM mailq.paused_kinds ORDER BY 1")]


async def test_pause_and_resume_a_kind(client: httpx.AsyncClient, conn: asyncpg.Connection) -> None:
    first = await client.post("/v1/kinds/search_engine/pause", headers=AS_ADMIN)
    assert first.status_code == 200
    assert first.json() == {"kind": "search_engine", "paused": True, "changed": True}
    again = await client.post("/v1/kinds/search_engine/pause", headers=AS_ADMIN)
    assert again.json()["changed"] is False
    assert await paused(conn) == ["search_engine"]
    resumed = await client.post("/v1/kinds/search_engine/resume", headers=AS_ADMIN)
    assert resumed.json() == {"kind": "search_engine", "paused": False, "changed": True}
    assert await paused(conn) == []
    idle = await client.post("/v1/kinds/search_engine/resume", headers=AS_ADMIN)
    assert idle.json()["changed"] is False


async def test_an_unknown_kind_is_404(client: httpx.AsyncClient, conn: asyncpg.Connection) -> None:
    for kind in ("newsletter", "Not%20A%20Kind", "x" * 300):
        for action in ("pause", "resume"):
            response = await client.post(f"/v1/kinds/{kind}/{action}", headers=AS_ADMIN)
            assert response.status_code == 404, (kind, action)
            assert response.json()["error"].startswith("kind:")
    assert await paused(conn) == []


async def test_a_kind_paused_under_an_older_config_can_still_be_resumed(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    await conn.execute("INSERT INTO mailq.paused_kinds (kind) VALUES ('retired')")
    response = await client.post("/v1/kinds/retired/resume", headers=AS_ADMIN)
    assert response.json() == {"kind": "retired", "paused": False, "changed": True}
