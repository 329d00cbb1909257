"""Idempotency-Key: a replay returns the first response (200) and queues nothing, also when
replays race; the same key with another body is 422; keys are scoped per token."""

from __future__ import annotations

import asyncio

import asyncpg
import httpx
import pytest

from tests.service.conftest import AS_CLIENT, CLIENT_ROTATED, bearer, email


def keyed(key: str, token_headers: dict[str, str] = AS_CLIENT) -> dict[str, str]:
    return {**token_headers, "Idempotency-Key": key}


async def count(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM mailq.emails"))


async def test_a_replay_returns_the_first_response_and_queues_nothing(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    first = await client.post("/v1/emails", json=email(), headers=keyed("order-1"))
    assert first.status_code == 201
    assert "idempotent-replayed" not in first.headers
    again = await client.post("/v1/emails", json=email(), headers=keyed("order-1"))
    assert again.status_code == 200
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert await count(conn) == 1


async def test_key_order_and_spacing_of_the_body_do_not_matter(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    headers = {**keyed("k"), "Content-Type": "application/json"}
    first = await client.post(
        "/v1/emails", content=b'{"to":"a@example.com","subject":"s","text":"t"}', headers=headers
    )
    again = await client.post(
        "/v1/emails",
        content=b'{ "text": "t", "subject": "s", "to": "a@example.com" }',
        headers=headers,
    )
    assert (first.status_code, again.status_code) == (201, 200)
    assert await count(conn) == 1


async def test_the_same_key_with_another_body_is_422(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    assert (await client.post("/v1/emails", json=email(1), headers=keyed("k"))).status_code == 201
    other = await client.post("/v1/emails", json=email(2), headers=keyed("k"))
    assert other.status_code == 422
    assert other.json()["error"].startswith("Idempotency-Key")
    batch = await client.post("/v1/emails/batch", json={"emails": [email(1)]}, headers=keyed("k"))
    assert batch.status_code == 422, "another endpoint is another request"
    assert await count(conn) == 1


async def test_keys_are_scoped_per_token(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    mine = await client.post("/v1/emails", json=email(), headers=keyed("shared"))
    theirs = await client.post(
        "/v1/emails", json=email(), headers=keyed("shared", bearer(CLIENT_ROTATED))
    )
    assert (mine.status_code, theirs.status_code) == (201, 201)
    assert mine.json()["id"] != theirs.json()["id"]
    assert await count(conn) == 2


async def test_an_invalid_request_does_not_use_up_the_key(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    bad = await client.post("/v1/emails", json=email(to="nope"), headers=keyed("k"))
    assert bad.status_code == 422
    good = await client.post("/v1/emails", json=email(), headers=keyed("k"))
    assert good.status_code == 201
    assert await count(conn) == 1


@pytest.mark.parametrize("racers", [2, 12])
async def test_racing_replays_queue_one_email(
    client: httpx.AsyncClient, conn: asyncpg.Connection, racers: int
) -> None:
    responses = await asyncio.gather(
        *(client.post("/v1/emails", json=email(), headers=keyed("race")) for _ in range(racers))
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * (racers - 1) + [201]
    assert len({r.json()["id"] for r in responses}) == 1
    assert await count(conn) == 1


async def test_racing_batches_queue_one_batch(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    body = {"emails": [email(n) for n in range(600)]}  # large enough to take the COPY path
    responses = await asyncio.gather(
        *(client.post("/v1/emails/batch", json=body, headers=keyed("b")) for _ in range(3))
    )
    assert sorted(r.status_code for r in responses) == [200, 200, 201]
    assert len({tuple(r.json()["ids"]) for r in responses}) == 1
    assert await count(conn) == 600


async def test_an_expired_key_can_be_used_again(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    await client.post("/v1/emails", json=email(1), headers=keyed("old"))
    await conn.execute("UPDATE mailq.idempotency_keys SET created_at = now() - interval '25 h'")
    fresh = await client.post("/v1/emails", json=email(2), headers=keyed("old"))
    assert fresh.status_code == 201
    assert await count(conn) == 2


@pytest.mark.parametrize("key", [b"", b"x" * 256, b"with space", "naïve".encode()])
async def test_a_malformed_key_is_400(client: httpx.AsyncClient, key: bytes) -> None:
    response = await client.post(
        "/v1/emails", json=email(), headers=[*AS_CLIENT.items(), ("Idempotency-Key", key)]
    )
    assert response.status_code == 400
    assert response.json()["error"].startswith("Idempotency-Key")
