"""The baseline for bench/http_enqueue.py: a bare Starlette endpoint doing one INSERT into
mailq.emails (no auth, no validation, no templates), with the same pool size as the service."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from mailq.service.state import HTTP_POOL_SIZE

INSERT = (
    "INSERT INTO mailq.emails (kind, to_address, message_id, content) "
    "VALUES ('welcome', $1, $2, $3::jsonb) RETURNING id"
)


@asynccontextmanager
async def lifespan(_app: Starlette) -> AsyncIterator[dict[str, Any]]:
    pool = await asyncpg.create_pool(
        os.environ["MAILQ_DATABASE_URL"], min_size=1, max_size=HTTP_POOL_SIZE
    )
    try:
        yield {"pool": pool}
    finally:
        await pool.close()


async def create(request: Request) -> JSONResponse:
    body = json.loads(await request.body())
    email_id = await request.state.pool.fetchval(
        INSERT, body["to"], f"<{uuid.uuid4().hex}@bench>", json.dumps(body)
    )
    return JSONResponse({"id": email_id}, status_code=201)


app = Starlette(routes=[Route("/v1/emails", create, methods=["POST"])], lifespan=lifespan)
