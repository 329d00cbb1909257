"""What a hostile client with a client token tried (issue 11, cases 3, 5 and 10): every request
is a short 4xx naming what is wrong, never a 5xx, and nothing is stored."""

from __future__ import annotations

import time
from typing import Any

import asyncpg
import httpx

from tests.service.conftest import AS_ADMIN, AS_CLIENT, email
from tests.service.test_campaigns_api import campaign

POISON = "{% for i in range(100000) %}{% for j in range(3000) %}{% endfor %}{% endfor %}done"
FILE = {"filename": "a.txt", "content_type": "text/plain", "content_base64": "eA=="}
MB = 1024 * 1024

# (method, path, request arguments, status, what the error starts with)
REFUSED: list[tuple[str, str, dict[str, Any], int, str]] = [
    # 3: 500s
    ("POST", "/v1/emails", {"json": email(metadata={"x": 2**64})}, 422, "metadata.x"),
    ("POST", "/v1/emails", {"json": email(metadata={"x": -(2**63) - 1})}, 422, "metadata.x"),
    (
        "POST",
        "/v1/emails/batch",
        {"json": {"emails": [email(), email(metadata={"x": 2**64})]}},
        422,
        "emails[1].metadata.x",
    ),
    (
        "POST",
        "/v1/campaigns",
        {"json": campaign(context={"company": "Ac\x00me"})},
        422,
        "context",
    ),
    ("GET", "/v1/suppressions?limit=" + "9" * 5000, {"headers": AS_ADMIN}, 400, "limit"),
    ("GET", "/v1/emails?limit=" + "9" * 5000, {}, 400, "limit"),
    # 5: errors that showed only at send
    ("POST", "/v1/emails", {"json": email(text='{% include "x" %}')}, 422, "template syntax"),
    ("POST", "/v1/emails", {"json": email(text='{% import "x" as y %}')}, 422, "template"),
    ("POST", "/v1/emails", {"json": email(html='{% extends "x" %}')}, 422, "template"),
    ("POST", "/v1/emails", {"json": email(text="{{ 1 is nosuchtest }}")}, 422, "template"),
    ("POST", "/v1/emails", {"json": email(text="{{ 1|nosuchfilter }}")}, 422, "template"),
    ("POST", "/v1/emails", {"json": email(text="{{ 1/0 }}")}, 422, "text: template rendering"),
    (
        "POST",
        "/v1/emails",
        {"json": email(text="{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}")},
        422,
        "text: template rendering failed: calls nested",
    ),
    ("POST", "/v1/emails", {"json": email(text=POISON)}, 422, "text: template rendering"),
    (
        "POST",
        "/v1/emails",
        {"json": email(attachments=[{**FILE, "filename": "x" * 2000}])},
        422,
        "attachments[0].filename",
    ),
    # 10: odd acceptances
    ("POST", "/v1/suppressions/%FF@example.com", {"headers": AS_ADMIN}, 400, "address"),
    ("POST", "/v1/emails", {"json": email(to="x" * MB + "@example.com")}, 422, "to"),
    ("POST", "/v1/emails", {"json": email(attachments=[FILE] * 101)}, 422, "attachments"),
]


async def test_hostile_requests_are_short_4xx_and_store_nothing(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    for method, path, arguments, status, field in REFUSED:
        kwargs = {"headers": AS_CLIENT, **arguments}
        started = time.monotonic()
        response = await client.request(method, path, **kwargs)
        label = f"{method} {path[:60]} {str(arguments)[:120]}"
        assert response.status_code == status, (label, response.text[:300])
        assert response.json()["error"].startswith(field), (label, response.text[:300])
        assert len(response.content) < 1000, label
        assert time.monotonic() - started < 5, label
    assert await conn.fetchval("SELECT count(*) FROM mailq.emails") == 0
    assert await conn.fetchval("SELECT count(*) FROM mailq.suppressions") == 0


async def test_deep_metadata_filters_and_huge_lengths_are_no_server_error(
    client: httpx.AsyncClient,
) -> None:
    deep = await client.get("/v1/emails", params={"metadata.x": "[" * 3000}, headers=AS_CLIENT)
    assert deep.status_code == 200 and deep.json()["emails"] == []
    huge = await client.post(
        "/v1/emails", content=b"{}", headers={**AS_CLIENT, "Content-Length": "9" * 5000}
    )
    assert huge.status_code == 413


async def test_options_lists_every_method_of_the_path(client: httpx.AsyncClient) -> None:
    response = await client.options("/v1/suppressions/ann@example.com", headers=AS_ADMIN)
    assert response.status_code == 405
    allowed = {m.strip() for m in response.headers["allow"].split(",")}
    assert {"GET", "POST", "DELETE"} <= allowed
    wrong = await client.put("/v1/emails", headers=AS_CLIENT)
    assert wrong.status_code == 405 and "POST" in wrong.headers["allow"]
    assert "GET" in wrong.headers["allow"]
