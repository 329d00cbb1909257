"""The emails endpoints: queue one and a batch, read one, find by metadata, retry, cancel."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx

from tests.service.conftest import AS_ADMIN, AS_CLIENT, email


async def test_queue_one_email_and_read_it_back(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    body = email(
        1,
        cc=["cc@example.com"],
        bcc=["bcc@example.com"],
        reply_to=["support@example.com"],
        headers={"X-Campaign": "spring"},
        attachments=[
            {
                "filename": "a.txt",
                "content_type": "text/plain",
                "content_base64": base64.b64encode(b"hello").decode(),
            }
        ],
        metadata={"user_id": "u-1"},
        priority=3,
    )
    created = await client.post("/v1/emails", json=body, headers=AS_CLIENT)
    assert created.status_code == 201
    assert created.json()["state"] == "queued"
    email_id = created.json()["id"]
    assert isinstance(email_id, int)

    got = await client.get(f"/v1/emails/{email_id}", headers=AS_CLIENT)
    assert got.status_code == 200
    view = got.json()
    assert view["id"] == email_id
    assert view["state"] == "queued"
    assert view["to"] == "user1@example.com"
    assert view["cc"] == ["cc@example.com"]
    assert view["bcc"] == ["bcc@example.com"]
    assert view["reply_to"] == ["support@example.com"]
    assert view["attachments"] == [
        # A text file without a charset gets charset=utf-8 (its content is UTF-8).
        {"filename": "a.txt", "content_type": "text/plain; charset=utf-8"}
    ]
    assert view["metadata"] == {"user_id": "u-1"}
    assert view["priority"] == 3
    assert view["message_id"].startswith("<") and view["message_id"].endswith(">")
    assert view["attempts"] == []
    assert view["created_at"] and view["due_at"]
    stored = await conn.fetchval("SELECT content->'headers'->>'X-Campaign' FROM mailq.emails")
    assert stored == "spring"


async def test_a_later_send_at_is_scheduled(client: httpx.AsyncClient) -> None:
    later = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    created = await client.post("/v1/emails", json=email(send_at=later), headers=AS_CLIENT)
    assert created.status_code == 201
    assert created.json()["state"] == "scheduled"
    view = (await client.get(f"/v1/emails/{created.json()['id']}", headers=AS_CLIENT)).json()
    assert view["state"] == "scheduled"
    assert datetime.fromisoformat(view["send_at"]) == datetime.fromisoformat(later)


async def test_a_batch_is_queued_in_order(client: httpx.AsyncClient) -> None:
    emails = [email(n, metadata={"n": n}) for n in range(5)]
    created = await client.post("/v1/emails/batch", json={"emails": emails}, headers=AS_CLIENT)
    assert created.status_code == 201
    ids = created.json()["ids"]
    assert ids == sorted(ids) and len(ids) == 5
    for n, email_id in enumerate(ids):
        view = (await client.get(f"/v1/emails/{email_id}", headers=AS_CLIENT)).json()
        assert view["to"] == f"user{n}@example.com"


async def test_a_batch_of_ten_thousand_goes_in_whole(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    emails = [{"to": f"u{n}@example.com", "subject": "Hi", "text": "Hello"} for n in range(10_000)]
    created = await client.post(
        "/v1/emails/batch", json={"emails": emails}, headers=AS_CLIENT, timeout=120
    )
    assert created.status_code == 201, created.text
    assert len(created.json()["ids"]) == 10_000
    assert await conn.fetchval("SELECT count(*) FROM mailq.emails") == 10_000


async def test_unknown_and_too_large_ids_are_404(client: httpx.AsyncClient) -> None:
    paths = ("/v1/emails/999", "/v1/emails/0", f"/v1/emails/{2**63}", "/v1/emails/abc")
    for path in (*paths, "/v1/emails/" + "9" * 5000, "/v1/emails/-1"):
        response = await client.get(path, headers=AS_CLIENT)
        assert response.status_code == 404, path
        assert "error" in response.json()
    for action in ("retry", "cancel"):
        response = await client.post(f"/v1/emails/{2**70}/{action}", headers=AS_ADMIN)
        assert response.status_code == 404


async def test_find_by_metadata(client: httpx.AsyncClient) -> None:
    bodies = [
        email(1, metadata={"user_id": 42, "plan": "pro"}),
        email(2, metadata={"user_id": "42", "plan": "free"}),
        email(3, metadata={"user_id": 7, "plan": "pro"}),
        email(4),
    ]
    ids = [
        (await client.post("/v1/emails", json=b, headers=AS_CLIENT)).json()["id"] for b in bodies
    ]

    async def find(query: str) -> list[int]:
        response = await client.get(f"/v1/emails?{query}", headers=AS_CLIENT)
        assert response.status_code == 200, response.text
        return [e["id"] for e in response.json()["emails"]]

    assert await find("metadata.user_id=42") == [ids[1], ids[0]]
    assert await find("metadata.user_id=42&metadata.plan=pro") == [ids[0]]
    assert await find("metadata.plan=pro") == [ids[2], ids[0]]
    assert await find("metadata.user_id=nobody") == []
    assert await find("") == list(reversed(ids))
    page = (await client.get("/v1/emails?metadata.plan=pro&limit=1", headers=AS_CLIENT)).json()
    assert [e["id"] for e in page["emails"]] == [ids[2]]
    assert page["next_before_id"] == ids[2]
    rest = await find(f"metadata.plan=pro&limit=1&before_id={page['next_before_id']}")
    assert rest == [ids[0]]


async def test_find_refuses_unknown_or_bad_parameters(client: httpx.AsyncClient) -> None:
    for query, field in [
        ("user_id=1", "user_id"),
        ("limit=0", "limit"),
        ("limit=abc", "limit"),
        ("before_id=-1", "before_id"),
        ("metadata.a=1&metadata.a=2", "metadata.a"),
        ("metadata.a=%00", "metadata"),
        ("metadata.%0A=x", "metadata"),
        ("metadata.a=1&metadata.b=1&metadata.c=1&metadata.d=1&metadata.e=1", "metadata"),
    ]:
        response = await client.get(f"/v1/emails?{query}", headers=AS_CLIENT)
        assert response.status_code == 400, query
        assert response.json()["error"].startswith(field), response.json()


async def test_cancel_then_retry(client: httpx.AsyncClient) -> None:
    email_id = (await client.post("/v1/emails", json=email(), headers=AS_CLIENT)).json()["id"]
    cancelled = await client.post(f"/v1/emails/{email_id}/cancel", headers=AS_ADMIN)
    assert cancelled.status_code == 200
    assert cancelled.json() == {"id": email_id, "state": "cancelled"}
    again = await client.post(f"/v1/emails/{email_id}/cancel", headers=AS_ADMIN)
    assert again.status_code == 409
    assert "cancelled" in again.json()["error"]
    retried = await client.post(f"/v1/emails/{email_id}/retry", headers=AS_ADMIN)
    assert retried.status_code == 200
    assert retried.json() == {"id": email_id, "state": "queued"}
    twice = await client.post(f"/v1/emails/{email_id}/retry", headers=AS_ADMIN)
    assert twice.status_code == 409


async def test_attempts_are_shown_with_their_smtp_replies(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    email_id = (await client.post("/v1/emails", json=email(), headers=AS_CLIENT)).json()["id"]
    await conn.execute(
        "UPDATE mailq.emails SET status = 'failed', attempts = 1, finished_at = now(), "
        "last_error = '550 no such user' WHERE id = $1",
        email_id,
    )
    await conn.execute(
        "INSERT INTO mailq.attempts (email_id, attempt, started_at, outcome, smtp_code, "
        "smtp_reply, error) VALUES ($1, 1, now(), 'failed', 550, '5.1.1 no such user', "
        "'refused')",
        email_id,
    )
    view = (await client.get(f"/v1/emails/{email_id}", headers=AS_CLIENT)).json()
    assert view["state"] == "failed"
    assert view["last_error"] == "550 no such user"
    [attempt] = view["attempts"]
    assert attempt["outcome"] == "failed"
    assert attempt["smtp_code"] == 550
    assert attempt["smtp_reply"] == "5.1.1 no such user"
    assert view["finished_at"] is not None


async def test_stats_and_the_old_stats_path(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    await client.post(
        "/v1/emails/batch",
        json={"emails": [email(1), email(2), email(3, kind="search_engine")]},
        headers=AS_CLIENT,
    )
    await conn.execute(
        "UPDATE mailq.emails SET status = 'sent', attempts = 1, finished_at = now() "
        "WHERE to_address = 'user1@example.com'"
    )
    stats = (await client.get("/v1/stats", headers=AS_ADMIN)).json()
    welcome = stats["kinds"]["welcome"]
    assert welcome["states"]["queued"] == 1
    assert welcome["states"]["sent"] == 1
    assert welcome["sent_last_minute"] == 1
    assert welcome["oldest_due_age_s"] >= 0
    assert stats["kinds"]["search_engine"]["states"]["queued"] == 1
    assert stats["totals"]["queued"] == 2

    old = await client.get("/email-queue/stats", headers=AS_CLIENT)
    assert old.status_code == 200
    assert old.json() == {
        "total": 3,
        "by_type": {
            "search_engine": {"total": 1, "pending": 1, "queued": 1},
            "welcome": {"total": 2, "pending": 1, "queued": 1, "sent": 1},
        },
    }


async def test_workers_and_the_old_processor_status(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    empty = (await client.get("/email-queue/background-processor/status", headers=AS_ADMIN)).json()
    assert empty["running"] is False and empty["workers"] == 0 and empty["last_cycle"] is None
    await conn.execute(
        "INSERT INTO mailq.worker_leases (id, hostname, pid, kinds, concurrency, "
        "lease_expires_at) VALUES (gen_random_uuid(), 'host', 1, '{welcome}', 16, "
        "now() + interval '30 seconds')"
    )
    workers = (await client.get("/v1/workers", headers=AS_ADMIN)).json()["workers"]
    assert len(workers) == 1
    assert workers[0]["hostname"] == "host" and workers[0]["kinds"] == ["welcome"]
    assert workers[0]["in_flight"] == 0
    status = (await client.get("/email-queue/background-processor/status", headers=AS_ADMIN)).json()
    assert status["running"] is True and status["workers"] == 1
    assert status["interval"] == 5.0
    assert datetime.fromisoformat(status["last_cycle"])
    assert json.dumps(status)  # plain JSON all through


async def test_attempts_show_the_providers_message_id(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    email_id = (await client.post("/v1/emails", json=email(), headers=AS_CLIENT)).json()["id"]
    await conn.execute(
        "UPDATE mailq.emails SET status = 'sent', attempts = 1, finished_at = now() WHERE id = $1",
        email_id,
    )
    await conn.execute(
        "INSERT INTO mailq.attempts (email_id, attempt, started_at, outcome, smtp_reply, "
        "provider_message_id) VALUES ($1, 1, now(), 'sent', 'accepted by postmark', 'pm-77')",
        email_id,
    )
    view = (await client.get(f"/v1/emails/{email_id}", headers=AS_CLIENT)).json()
    [attempt] = view["attempts"]
    assert (attempt["outcome"], attempt["provider_message_id"]) == ("sent", "pm-77")
