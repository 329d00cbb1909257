"""The campaigns endpoints: create with recipients, add more in chunks, progress by state,
pause, resume, cancel; idempotency; every refusal names its field and stores nothing."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from tests.service.conftest import AS_ADMIN, AS_CLIENT


def campaign(n: int = 3, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "Spring launch",
        "kind": "search_engine",
        "subject": "Hello {{ name }}",
        "text": "News for {{ name }} from {{ company }}",
        "context": {"company": "Acme"},
        "send_at": (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
        "recipients": [
            {"email": f"person{i}@example.com", "context": {"name": f"P{i}"}} for i in range(n)
        ],
    }
    body.update(changes)
    return body


async def counts(conn: asyncpg.Connection) -> tuple[int, int]:
    return (
        await conn.fetchval("SELECT count(*) FROM mailq.campaigns"),
        await conn.fetchval("SELECT count(*) FROM mailq.emails"),
    )


async def create(client: httpx.AsyncClient, body: dict[str, Any]) -> int:
    response = await client.post("/v1/campaigns", json=body, headers=AS_CLIENT)
    assert response.status_code == 201, response.text
    campaign_id: int = response.json()["id"]
    return campaign_id


async def test_create_add_in_chunks_and_read_progress(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    created = await client.post("/v1/campaigns", json=campaign(3), headers=AS_CLIENT)
    assert created.status_code == 201
    assert created.json()["recipients"] == 3
    campaign_id = created.json()["id"]

    for chunk in ([2, 3, 4], [5, 6]):  # person2 is already in: a duplicate
        more = [{"email": f"PERSON{i}@example.com", "context": {"name": str(i)}} for i in chunk]
        added = await client.post(
            f"/v1/campaigns/{campaign_id}/recipients", json={"recipients": more}, headers=AS_CLIENT
        )
        assert added.status_code == 200
        assert added.json()["added"] + added.json()["duplicates"] == len(chunk)
    assert added.json() == {"added": 2, "duplicates": 0, "suppressed": 0}

    view = (await client.get(f"/v1/campaigns/{campaign_id}", headers=AS_CLIENT)).json()
    assert view["id"] == campaign_id and view["name"] == "Spring launch"
    assert view["kind"] == "search_engine" and view["status"] == "active"
    assert view["recipients"] == 7
    assert view["progress"]["scheduled"] == 7 and view["progress"]["sent"] == 0
    assert await counts(conn) == (1, 7)


async def test_pause_resume_cancel(client: httpx.AsyncClient, conn: asyncpg.Connection) -> None:
    campaign_id = await create(client, campaign(4, send_at=datetime.now(UTC).isoformat()))
    base = f"/v1/campaigns/{campaign_id}"

    paused = await client.post(f"{base}/pause", headers=AS_ADMIN)
    assert paused.status_code == 200
    assert paused.json()["status"] == "paused" and paused.json()["changed"] == 4
    # Recipients added to a paused campaign wait with it.
    late = {"recipients": [{"email": "late@example.com", "context": {"name": "L"}}]}
    assert (await client.post(f"{base}/recipients", json=late, headers=AS_CLIENT)).json()[
        "added"
    ] == 1
    held = await conn.fetchval("SELECT count(*) FROM mailq.emails WHERE run_at > now() + '1y'")
    assert held == 5

    resumed = await client.post(f"{base}/resume", headers=AS_ADMIN)
    assert resumed.json()["status"] == "active" and resumed.json()["changed"] == 5
    assert resumed.json()["progress"]["queued"] == 5

    cancelled = await client.post(f"{base}/cancel", headers=AS_ADMIN)
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["progress"]["cancelled"] == 5

    for after in ("pause", "resume"):
        refused = await client.post(f"{base}/{after}", headers=AS_ADMIN)
        assert refused.status_code == 409 and "cancelled" in refused.json()["error"]
    closed = await client.post(f"{base}/recipients", json=late, headers=AS_CLIENT)
    assert closed.status_code == 409


@pytest.mark.parametrize(
    ("method", "suffix"),
    [
        ("GET", ""),
        ("POST", "/recipients"),
        ("POST", "/pause"),
        ("POST", "/resume"),
        ("POST", "/cancel"),
    ],
)
async def test_unknown_campaign_ids_are_404(
    client: httpx.AsyncClient, method: str, suffix: str
) -> None:
    body = {"recipients": [{"email": "a@example.com"}]}
    for campaign_id in (12345, 2**63 - 1, 2**63, 0):
        response = await client.request(
            method,
            f"/v1/campaigns/{campaign_id}{suffix}",
            headers=AS_ADMIN,
            json=body if suffix == "/recipients" else None,
        )
        assert response.status_code == 404, (campaign_id, response.text)
        assert "error" in response.json()


@pytest.mark.parametrize(
    ("changes", "status", "field"),
    [
        ({"kind": "newsletter"}, 422, "kind"),
        ({"kind": "Not A Kind"}, 422, "kind"),
        ({"kind": None}, 422, "kind"),
        ({"name": ""}, 422, "name"),
        ({"name": "two\nlines"}, 422, "name"),
        ({"name": 5}, 422, "name"),
        ({"send_at": "tomorrow"}, 422, "send_at"),
        ({"send_at": "2030-01-01T00:00:00"}, 422, "send_at"),
        ({"send_at": "2999-01-01T00:00:00Z"}, 422, "send_at"),
        ({"send_at": "1969-01-01T00:00:00Z"}, 422, "send_at"),
        ({"subject": "Hi\r\nBcc: x@example.com"}, 422, "subject"),
        ({"text": "nul \x00 here"}, 422, "text"),
        ({"template": "no_such_template", "subject": None, "text": None}, 422, "template"),
        ({"priority": 12}, 422, "priority"),
        ({"priority": True}, 422, "priority"),
        ({"max_attempts": 0}, 422, "max_attempts"),
        ({"reply_to": "x@example.com"}, 422, "reply_to"),
        ({"headers": {"Bad Name": "x"}}, 422, "headers"),
        ({"context": []}, 422, "context"),
        ({"surprise": 1}, 422, "surprise"),
        ({"recipients": "a@example.com"}, 422, "recipients"),
        ({"recipients": [{"email": "not an address"}]}, 422, "recipients[0].email"),
        ({"recipients": [{"email": "a@example.com", "context": {"name": "A"}}, {}]}, 422, "[1]"),
        ({"recipients": [{"email": "a\r\n@example.com"}]}, 422, "recipients[0].email"),
        ({"recipients": [{"email": "a@example.com"}]}, 422, "recipients[0].context"),
        ({"recipients": [{"email": "a@example.com", "context": 3}]}, 422, "recipients[0].context"),
        (
            {"recipients": [{"email": "a@example.com", "context": {"name": "x\ny"}}]},
            422,
            "recipients[0].context.name",
        ),
        ({"recipients": [{"email": "a@example.com", "extra": 1}]}, 422, "recipients[0].extra"),
    ],
)
async def test_a_bad_campaign_is_refused_naming_the_field_and_nothing_is_stored(
    client: httpx.AsyncClient,
    conn: asyncpg.Connection,
    changes: dict[str, Any],
    status: int,
    field: str,
) -> None:
    body = campaign(2)
    body.update(changes)
    body = {k: v for k, v in body.items() if v is not None or k == "kind"}
    response = await client.post("/v1/campaigns", json=body, headers=AS_CLIENT)
    assert response.status_code == status, response.text
    assert field in response.json()["error"]
    assert await counts(conn) == (0, 0)


async def test_bad_bodies_are_400(client: httpx.AsyncClient, conn: asyncpg.Connection) -> None:
    for raw in (b"", b"{", b"[1]", b'"x"'):
        response = await client.post("/v1/campaigns", content=raw, headers=AS_CLIENT)
        assert response.status_code == 400, raw
        assert response.json()["error"].startswith("body")
    campaign_id = await create(client, campaign(1))
    for data in ({}, {"recipients": 1}, {"recipients": [], "more": 1}):
        response = await client.post(
            f"/v1/campaigns/{campaign_id}/recipients", json=data, headers=AS_CLIENT
        )
        assert response.status_code == 422, data
    response = await client.post(
        f"/v1/campaigns/{campaign_id}/recipients",
        json={"recipients": [{"email": "ok@example.com", "context": {"name": "o"}}, {"email": ""}]},
        headers=AS_CLIENT,
    )
    assert response.status_code == 422 and "recipients[1].email" in response.json()["error"]
    assert await counts(conn) == (1, 1), "a refused chunk stores none of its recipients"


async def test_send_at_defaults_to_now_and_suppressed_recipients_are_counted(
    client: httpx.AsyncClient,
) -> None:
    await client.post(
        "/v1/suppressions", json={"addresses": ["PERSON1@example.com"]}, headers=AS_ADMIN
    )
    body = campaign(3)
    del body["send_at"]
    created = await client.post("/v1/campaigns", json=body, headers=AS_CLIENT)
    assert created.status_code == 201
    assert created.json() == {
        "id": created.json()["id"],
        "recipients": 3,
        "duplicates": 0,
        "suppressed": 1,
    }
    view = (await client.get(f"/v1/campaigns/{created.json()['id']}", headers=AS_CLIENT)).json()
    assert view["progress"]["queued"] == 2 and view["progress"]["cancelled"] == 1


async def test_idempotency_key_creates_once_also_when_racing(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    body = campaign(5)
    headers = {**AS_CLIENT, "Idempotency-Key": "campaign-1"}
    responses = await asyncio.gather(
        *(client.post("/v1/campaigns", json=body, headers=headers) for _ in range(4))
    )
    assert sorted(r.status_code for r in responses) == [200, 200, 200, 201]
    assert len({r.json()["id"] for r in responses}) == 1
    assert await counts(conn) == (1, 5)
    other = await client.post("/v1/campaigns", json=campaign(1), headers=headers)
    assert other.status_code == 422 and "Idempotency-Key" in other.json()["error"]


async def test_a_client_token_cannot_pause_and_an_admin_can_create(
    client: httpx.AsyncClient,
) -> None:
    campaign_id = await create(client, campaign(1))
    assert (
        await client.post(f"/v1/campaigns/{campaign_id}/pause", headers=AS_CLIENT)
    ).status_code == 403
    as_admin = await client.post("/v1/campaigns", json=campaign(1, name="B"), headers=AS_ADMIN)
    assert as_admin.status_code == 201


async def test_a_refused_campaign_does_not_use_up_its_idempotency_key(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    headers = {**AS_CLIENT, "Idempotency-Key": "retry-me"}
    bad = campaign(2)
    bad["recipients"].append({"email": "broken"})
    refused = await client.post("/v1/campaigns", json=bad, headers=headers)
    assert refused.status_code == 422 and "recipients[2].email" in refused.json()["error"]
    assert await counts(conn) == (0, 0)
    fixed = await client.post("/v1/campaigns", json=campaign(2), headers=headers)
    assert fixed.status_code == 201


async def test_the_openapi_document_describes_the_new_endpoints(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert paths["/v1/campaigns"]["post"]["requestBody"]["content"]["application/json"]
    assert "/v1/campaigns/{id}/recipients" in paths
    one_click = paths["/v1/unsubscribe/{token}"]["post"]
    assert one_click["security"] == []
    assert "application/x-www-form-urlencoded" in one_click["requestBody"]["content"]
    page = paths["/v1/unsubscribe/{token}"]["get"]
    assert "text/html" in page["responses"]["200"]["content"]
    assert paths["/v1/suppressions/{address}"]["post"]["requestBody"]["required"] is False
    assert {"pause", "resume"} <= {p.rsplit("/", 1)[1] for p in paths if p.startswith("/v1/kinds/")}
