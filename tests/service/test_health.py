"""/healthz, /readyz, /metrics, /openapi.json, and the service refusing to start wrongly."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import asyncpg
import httpx
import pytest
from asgi_lifespan import LifespanManager

from mailq.errors import DatabaseUnavailable, SchemaMismatch
from mailq.service.app import create_app
from mailq.service.errors import RETRY_AFTER_S, RetryAfterOn503
from mailq.settings import Settings
from tests.service.conftest import AS_CLIENT, email
from tests.service.test_auth import EXPECTED
from tests.support import postgres


async def test_healthz_and_readyz(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready"
    assert ready.json()["embedded_worker"] == "off"


async def test_readyz_is_503_when_the_schema_is_behind(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    await conn.execute("UPDATE mailq.alembic_version SET version_num = '0001_create_queue'")
    response = await client.get("/readyz")
    assert response.status_code == 503
    assert "mailq migrate" in response.json()["error"]
    assert int(response.headers["retry-after"]) > 0


async def test_readyz_is_503_when_the_database_is_gone(
    client: httpx.AsyncClient, pg_admin_url: str, database_name: str
) -> None:
    assert (await client.get("/readyz")).status_code == 200
    postgres.drop_database(pg_admin_url, database_name)
    response = await client.get("/readyz")
    assert response.status_code == 503
    assert "unreachable" in response.json()["error"]
    assert int(response.headers["retry-after"]) > 0
    assert (await client.get("/healthz")).status_code == 200
    scraped = await client.get("/metrics")
    assert scraped.status_code == 200
    assert "mailq_database_up 0.0" in scraped.text
    down = await client.get("/v1/emails/1", headers=AS_CLIENT)
    assert down.status_code == 503
    assert down.json()["error"].startswith("the queue's database is unavailable")
    assert down.headers["retry-after"] == str(RETRY_AFTER_S)
    posted = await client.post("/v1/emails", json=email(), headers=AS_CLIENT)
    assert posted.status_code == 503
    assert posted.headers.get_list("retry-after") == [str(RETRY_AFTER_S)]


async def test_any_503_gets_retry_after_once() -> None:
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def busy(_request: object) -> PlainTextResponse:
        return PlainTextResponse("busy", status_code=503)

    async def named(_request: object) -> PlainTextResponse:
        return PlainTextResponse("later", status_code=503, headers={"Retry-After": "120"})

    async def fine(_request: object) -> PlainTextResponse:
        return PlainTextResponse("ok")

    app = RetryAfterOn503(
        Starlette(routes=[Route("/busy", busy), Route("/named", named), Route("/ok", fine)])
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as http:
        assert (await http.get("/busy")).headers["retry-after"] == str(RETRY_AFTER_S)
        assert (await http.get("/named")).headers.get_list("retry-after") == ["120"]
        assert "retry-after" not in (await http.get("/ok")).headers


def _sample(text: str, name: str, labels: str) -> float:
    match = re.search(rf"^{re.escape(name)}{{{re.escape(labels)}}} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


async def test_metrics(client: httpx.AsyncClient) -> None:
    before = (await client.get("/metrics")).text
    await client.post("/v1/emails", json=email(), headers=AS_CLIENT)
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert "mailq_database_up 1.0" in text
    assert _sample(text, "mailq_emails", 'kind="welcome",state="queued"') == 1
    assert "mailq_workers_live 0.0" in text
    queued = 'kind="welcome"'
    assert _sample(text, "mailq_emails_queued_total", queued) == (
        _sample(before, "mailq_emails_queued_total", queued) + 1
    )
    created = 'method="POST",route="/v1/emails",status="201"'
    assert _sample(text, "mailq_http_requests_total", created) == (
        _sample(before, "mailq_http_requests_total", created) + 1
    )


async def test_openapi_describes_every_endpoint(client: httpx.AsyncClient) -> None:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["openapi"].startswith("3.1")
    described = {
        (method.upper(), path)
        for path, operations in document["paths"].items()
        for method in operations
    }
    assert described == {(m, p.replace("{id:id}", "{id}")) for m, p in EXPECTED}
    create = document["paths"]["/v1/emails"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"]["required"] == ["to"]
    assert {"201", "200", "401", "413", "422"} <= set(create["responses"])
    assert document["paths"]["/healthz"]["get"]["security"] == []


# -- refusing to start ---------------------------------------------------------------------


async def test_no_database_url_uses_the_embedded_database_with_a_warning(
    settings: Settings, mailq_home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Nothing configured: the service starts the embedded PostgreSQL under MAILQ_HOME, and
    # refuses it clearly until it is migrated (`mailq up` migrates it first).
    bare = replace(settings, database_url=None, home=mailq_home, embedded_worker=False)
    with pytest.raises(SchemaMismatch, match="run `mailq migrate`"):
        async with LifespanManager(create_app(bare)):
            pass
    assert "MAILQ_DATABASE_URL is not set: using the embedded PostgreSQL" in caplog.text


async def test_an_unreachable_database_is_a_clear_error(settings: Settings) -> None:
    unreachable = replace(settings, database_url="postgresql://postgres@127.0.0.1:1/none")
    with pytest.raises(DatabaseUnavailable, match="cannot reach"):
        async with LifespanManager(create_app(unreachable)):
            pass


async def test_a_schema_it_does_not_know_is_refused(
    settings: Settings, conn: asyncpg.Connection
) -> None:
    await conn.execute("UPDATE mailq.alembic_version SET version_num = '9999_future'")
    with pytest.raises(SchemaMismatch, match="does not know"):
        async with LifespanManager(create_app(settings)):
            pass
