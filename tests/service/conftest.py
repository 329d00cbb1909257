"""The ASGI app in-process: httpx over ASGITransport inside LifespanManager."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from starlette.types import ASGIApp

from mailq.service.app import create_app
from mailq.service.state import Limits
from mailq.settings import Settings

CLIENT = "client-token-one"
CLIENT_ROTATED = "client-token-two"
ADMIN = "admin-token-one"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


AS_CLIENT = bearer(CLIENT)
AS_ADMIN = bearer(ADMIN)


def email(n: int = 0, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "to": f"user{n}@example.com",
        "subject": "Welcome, {{ name }}",
        "text": "Hello {{ name }}",
        "context": {"name": f"user {n}"},
    }
    body.update(changes)
    return body


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=database_url,
        home=tmp_path / "home",
        backend="null://",
        api_tokens=(CLIENT, CLIENT_ROTATED),
        admin_tokens=(ADMIN,),
        embedded_worker=False,
        shutdown_grace_s=5.0,
    )


@pytest.fixture
def limits() -> Limits:
    return Limits()


@pytest.fixture
async def app(settings: Settings, limits: Limits) -> AsyncIterator[ASGIApp]:
    application = create_app(settings, limits=limits)
    async with LifespanManager(application) as manager:
        yield manager.app


@pytest.fixture
async def client(app: ASGIApp) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://mailq.test") as http:
        yield http
