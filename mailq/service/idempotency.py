"""Idempotency-Key: a request sent again with the same key (by the same token) returns the
first response, with 200, and queues nothing; the same key with another request is 422.

The key is claimed by inserting its row, in the same transaction that queues the emails and
stores the response. A concurrent request with the same key waits on the row's primary key
until that transaction ends, then finds the stored response: two racing replays queue once.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
from starlette.requests import Request

from mailq.db.idempotency_keys import (
    idempotency_key_claim,
    idempotency_key_complete,
    idempotency_key_get,
)
from mailq.service.auth import principal_of
from mailq.service.errors import ApiError

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
_KEY = re.compile(r"[\x21-\x7e]{1,255}")
# How /openapi.json declares the header.
PARAMETER = {
    "name": HEADER,
    "in": "header",
    "required": False,
    "description": "replays within 24 h return the first response (200) and queue nothing",
    "schema": {"type": "string", "pattern": "^[!-~]{1,255}$"},
}
# A claimed key whose row vanished before it could be read (pruned in between): claim again.
CLAIM_TRIES = 3

Work = Callable[[asyncpg.Connection], Awaitable[tuple[int, dict[str, Any]]]]


@dataclass(frozen=True, slots=True)
class Outcome:
    status: int
    body: dict[str, Any]
    replayed: bool


def key_of(request: Request) -> str | None:
    raw = request.headers.get(HEADER)
    if raw is None:
        return None
    if not _KEY.fullmatch(raw):
        raise ApiError(400, f"{HEADER}: 1 to 255 visible ASCII characters")
    return raw


def request_hash(method: str, path: str, body: Any) -> str:
    """What makes two requests "the same": method, path and the body's JSON value (so key
    order and whitespace do not matter)."""
    canonical = json.dumps(
        [method, path, body], sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


async def run_once(
    pool: asyncpg.Pool,
    *,
    scope: str,
    key: str,
    fingerprint: str,
    keep_hours: float,
    work: Work,
) -> Outcome:
    """Run `work` (inside the key's transaction) unless the key was used before."""
    for _ in range(CLAIM_TRIES):
        async with pool.acquire() as conn, conn.transaction():
            if await idempotency_key_claim(conn, scope, key, fingerprint, keep_hours):
                status, body = await work(conn)
                await idempotency_key_complete(
                    conn, scope, key, status, json.dumps(body, separators=(",", ":"))
                )
                return Outcome(status, body, replayed=False)
            stored = await idempotency_key_get(conn, scope, key)
        if stored is None or stored["status"] is None:
            continue
        if stored["request_hash"] != fingerprint:
            raise ApiError(422, f"{HEADER}: already used with a different request")
        return Outcome(200, json.loads(stored["response"]), replayed=True)
    raise ApiError(409, f"{HEADER}: the key is being used by another request; try again")


async def perform(
    request: Request, pool: asyncpg.Pool, data: Any, keep_hours: float, work: Work
) -> Outcome:
    """Run `work` on a connection of `pool`: once per Idempotency-Key when the request has
    one (the key's scope is the caller's token), else simply."""
    key = key_of(request)
    if key is None:
        async with pool.acquire() as conn:
            status, body = await work(conn)
        return Outcome(status, body, replayed=False)
    return await run_once(
        pool,
        scope=principal_of(request).scope,
        key=key,
        fingerprint=request_hash(request.method, request.url.path, data),
        keep_hours=keep_hours,
        work=work,
    )
