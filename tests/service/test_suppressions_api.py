"""The suppression list over HTTP: list (paged), add (cancelling unsent emails), remove."""

from __future__ import annotations

import asyncpg
import httpx
import pytest

from tests.service.conftest import AS_ADMIN, AS_CLIENT, email


async def test_add_read_list_and_remove(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    queued = await client.post("/v1/emails", json=email(1), headers=AS_CLIENT)
    added = await client.post(
        "/v1/suppressions",
        json={"addresses": ["User1@Example.com", "b@example.com"], "reason": "asked by phone"},
        headers=AS_ADMIN,
    )
    assert added.status_code == 200
    assert added.json() == {"added": 2, "cancelled": 1}
    view = (await client.get(f"/v1/emails/{queued.json()['id']}", headers=AS_CLIENT)).json()
    assert view["state"] == "cancelled" and "asked by phone" in view["last_error"]

    one = await client.get("/v1/suppressions/USER1@example.com", headers=AS_ADMIN)
    assert one.status_code == 200
    assert one.json()["address"] == "user1@example.com"
    assert one.json()["reason"] == "asked by phone" and one.json()["created_at"]

    single = await client.post("/v1/suppressions/c%2Btag@example.com", headers=AS_ADMIN)
    assert single.json() == {"added": 1, "cancelled": 0}
    again = await client.post(
        "/v1/suppressions/c+tag@example.com", json={"reason": "bounced"}, headers=AS_ADMIN
    )
    assert again.json() == {"added": 0, "cancelled": 0}

    first = await client.get("/v1/suppressions?limit=2", headers=AS_ADMIN)
    assert [e["address"] for e in first.json()["suppressions"]] == [
        "b@example.com",
        "c+tag@example.com",
    ]
    after = first.json()["next_after"]
    assert after == "c+tag@example.com"
    rest = await client.get(
        "/v1/suppressions", params={"after": after, "limit": 2}, headers=AS_ADMIN
    )
    assert [e["address"] for e in rest.json()["suppressions"]] == ["user1@example.com"]
    assert rest.json()["next_after"] is None

    removed = await client.delete("/v1/suppressions/user1@example.com", headers=AS_ADMIN)
    assert removed.json() == {"removed": 1}
    assert (
        await client.get("/v1/suppressions/user1@example.com", headers=AS_ADMIN)
    ).status_code == 404
    assert (
        await client.delete("/v1/suppressions/user1@example.com", headers=AS_ADMIN)
    ).status_code == 404
    bulk = await client.request(
        "DELETE",
        "/v1/suppressions",
        json={"addresses": ["b@example.com", "c+tag@example.com", "never@example.com"]},
        headers=AS_ADMIN,
    )
    assert bulk.json() == {"removed": 2}
    assert await conn.fetchval("SELECT count(*) FROM mailq.suppressions") == 0


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "field"),
    [
        ("POST", "/v1/suppressions", {"addresses": []}, 422, "addresses"),
        ("POST", "/v1/suppressions", {"addresses": "a@example.com"}, 422, "addresses"),
        (
            "POST",
            "/v1/suppressions",
            {"addresses": ["ok@example.com", "nope"]},
            422,
            "addresses[1]",
        ),
        ("POST", "/v1/suppressions", {"addresses": [5]}, 422, "addresses[0]"),
        ("POST", "/v1/suppressions", {"addresses": ["a@example.com"], "reason": ""}, 422, "reason"),
        (
            "POST",
            "/v1/suppressions",
            {"addresses": ["a@example.com"], "reason": "a\nb"},
            422,
            "reason",
        ),
        ("POST", "/v1/suppressions", {"addresses": ["a@example.com"], "x": 1}, 422, "x"),
        ("POST", "/v1/suppressions", [], 400, "body"),
        ("DELETE", "/v1/suppressions", {}, 422, "addresses"),
        ("POST", "/v1/suppressions/not-an-address", None, 422, "address"),
        ("POST", "/v1/suppressions/a%00b@example.com", None, 422, "address"),
        ("POST", "/v1/suppressions/a@example.com", {"reason": 3}, 422, "reason"),
        ("POST", "/v1/suppressions/a@example.com", {"why": "x"}, 422, "why"),
        ("GET", "/v1/suppressions/not-an-address", None, 422, "address"),
        ("DELETE", "/v1/suppressions/%0D%0A", None, 422, "address"),
        ("GET", "/v1/suppressions?limit=0", None, 400, "limit"),
        ("GET", "/v1/suppressions?limit=x", None, 400, "limit"),
        ("GET", "/v1/suppressions?after=%00", None, 400, "after"),
        ("GET", "/v1/suppressions?page=2", None, 400, "page"),
    ],
)
async def test_bad_requests_name_the_field_and_store_nothing(
    client: httpx.AsyncClient,
    conn: asyncpg.Connection,
    method: str,
    path: str,
    body: object,
    status: int,
    field: str,
) -> None:
    response = (
        await client.request(method, path, json=body, headers=AS_ADMIN)
        if body is not None
        else await client.request(method, path, headers=AS_ADMIN)
    )
    assert response.status_code == status, response.text
    assert field in response.json()["error"]
    assert await conn.fetchval("SELECT count(*) FROM mailq.suppressions") == 0
