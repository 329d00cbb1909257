"""Who may use the dashboard (SPEC.md "Dashboard"), in-process over ASGI: pages need a
session, changes need an admin session, the CSRF token and the same origin, else 403 with
nothing changed; a session ends with its token; the viewer token reads /v1 and changes
nothing."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import asyncpg
import httpx
import pytest
from asgi_lifespan import LifespanManager

from mailq.service import auth
from mailq.service.app import create_app
from mailq.service.dashboard import session as sessions
from mailq.settings import Settings

CLIENT, ADMIN, VIEWER = "client-token", "admin-token", "viewer-token"
ORIGIN = {"Origin": "http://mailq.test"}
# Every change the dashboard offers, with a form that would do something.
CHANGES = [
    ("/dashboard/kinds/welcome/pause", {}),
    ("/dashboard/emails/{email}/cancel", {}),
    ("/dashboard/emails/{email}/retry", {}),
    ("/dashboard/emails/{email}/mark-sent", {}),
    ("/dashboard/emails/bulk", {"action": "cancel", "scope": "selected", "id": "{email}"}),
    ("/dashboard/emails/bulk", {"action": "cancel", "scope": "matching", "confirm": "yes"}),
    ("/dashboard/failures/group", {"action": "retry", "by": "code", "key": "none"}),
    ("/dashboard/campaigns/1/pause", {}),
    ("/dashboard/suppressions/add", {"address": "x@example.com"}),
    ("/dashboard/suppressions/remove", {"address": "x@example.com"}),
    ("/dashboard/suppressions/import", {"csv": "y@example.com"}),
    ("/dashboard/unknown/bulk", {"action": "resend", "scope": "all"}),
]
PAGES = [
    "/dashboard",
    "/dashboard/emails",
    "/dashboard/emails/1",
    "/dashboard/emails/1/preview",
    "/dashboard/failures",
    "/dashboard/campaigns",
    "/dashboard/campaigns/1",
    "/dashboard/kinds",
    "/dashboard/workers",
    "/dashboard/suppressions",
    "/dashboard/unknown",
    "/dashboard/live",
    "/dashboard/live.json",
]


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=database_url,
        home=tmp_path / "home",
        backend="null://",
        api_tokens=(CLIENT,),
        admin_tokens=(ADMIN,),
        viewer_tokens=(VIEWER,),
        secret_key="test-secret",
        embedded_worker=False,
    )


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://mailq.test") as http:
            yield http


async def sign_in(http: httpx.AsyncClient, token: str) -> str:
    """Sign in; returns the CSRF token of the session's pages."""
    form = await http.get("/dashboard/login")
    csrf = _csrf(form.text)
    signed = await http.post(
        "/dashboard/login", data={"csrf": csrf, "token": token, "next": "/dashboard"},
        headers=ORIGIN,
    )  # fmt: skip
    assert signed.status_code == 303, signed.text
    assert signed.headers["location"] == "/dashboard"
    cookie = signed.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Max-Age=43200" in cookie
    assert token not in cookie
    return _csrf((await http.get("/dashboard")).text)


def _csrf(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, page[:400]
    return found.group(1)


async def _state(conn: asyncpg.Connection) -> tuple[object, ...]:
    return (
        await conn.fetch("SELECT id, status, run_at FROM mailq.emails ORDER BY id"),
        await conn.fetch("SELECT * FROM mailq.paused_kinds"),
        await conn.fetch("SELECT * FROM mailq.suppressions ORDER BY address"),
        await conn.fetch("SELECT id, status FROM mailq.campaigns"),
        await conn.fetchval("SELECT count(*) FROM mailq.audit_log"),
    )


async def _email(http: httpx.AsyncClient) -> int:
    made = await http.post(
        "/v1/emails", json={"to": "a@example.com", "subject": "s", "text": "t"},
        headers={"Authorization": f"Bearer {CLIENT}"},
    )  # fmt: skip
    assert made.status_code == 201
    return int(made.json()["id"])


async def test_every_page_sends_a_stranger_to_the_login_form(client: httpx.AsyncClient) -> None:
    for path in PAGES:
        response = await client.get(path)
        assert response.status_code == 303, path
        assert response.headers["location"].startswith("/dashboard/login?next=/dashboard"), path
    login = await client.get("/dashboard/login")
    assert login.status_code == 200 and 'name="token"' in login.text
    assert (await client.get("/dashboard/static/dashboard.css")).status_code == 200


async def test_each_token_signs_in_and_the_client_token_does_not(
    client: httpx.AsyncClient,
) -> None:
    for token, role in ((ADMIN, "admin"), (VIEWER, "viewer")):
        client.cookies.clear()
        await sign_in(client, token)
        page = await client.get("/dashboard")
        assert page.status_code == 200 and f"role-{role}" in page.text
        assert page.headers["content-security-policy"].startswith("default-src 'none'")
        # The page's time and its queries' time, for the benchmark.
        timing = re.fullmatch(
            r"page;dur=([0-9.]+), db;dur=([0-9.]+)", page.headers["server-timing"]
        )
        assert timing is not None and float(timing[1]) > 0 and float(timing[2]) > 0
    client.cookies.clear()
    form = await client.get("/dashboard/login")
    refused = await client.post(
        "/dashboard/login", data={"csrf": _csrf(form.text), "token": CLIENT}, headers=ORIGIN
    )
    assert refused.status_code == 401 and "mailq_session" not in refused.headers.get(
        "set-cookie", ""
    )


async def test_the_viewer_gets_403_from_every_change_and_nothing_changes(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    email = await _email(client)
    await conn.execute(
        "UPDATE mailq.emails SET status = 'unknown', attempts = 1 WHERE id = $1", email
    )
    csrf = await sign_in(client, VIEWER)
    before = await _state(conn)
    for path, form in CHANGES:
        data = {k: v.replace("{email}", str(email)) for k, v in form.items()}
        response = await client.post(
            path.replace("{email}", str(email)), data={**data, "csrf": csrf}, headers=ORIGIN
        )
        assert response.status_code == 403, path
    assert await _state(conn) == before
    # Reading the API is allowed, changing it is not.
    bearer = {"Authorization": f"Bearer {VIEWER}"}
    assert (await client.get("/v1/stats", headers=bearer)).status_code == 200
    assert (await client.get(f"/v1/emails/{email}", headers=bearer)).status_code == 200
    assert (await client.post("/v1/kinds/welcome/pause", headers=bearer)).status_code == 403
    sent = await client.post("/v1/emails", json={"to": "b@example.com", "subject": "s",
                                                  "text": "t"}, headers=bearer)  # fmt: skip
    assert sent.status_code == 403
    assert await _state(conn) == before


async def test_a_change_without_csrf_or_from_another_origin_is_refused(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    csrf = await sign_in(client, ADMIN)
    before = await _state(conn)
    attempts = [
        ({}, ORIGIN),  # no CSRF token
        ({"csrf": "forged"}, ORIGIN),
        ({"csrf": csrf}, {"Origin": "https://evil.example"}),
        ({"csrf": csrf}, {"Origin": "null"}),
        ({"csrf": csrf}, {"Sec-Fetch-Site": "cross-site"}),
        ({"csrf": csrf}, {"Origin": "http://mailq.test", "Sec-Fetch-Site": "same-site"}),
        ({"csrf": csrf}, {}),  # neither Origin nor Sec-Fetch-Site
    ]
    for data, headers in attempts:
        response = await client.post("/dashboard/kinds/welcome/pause", data=data, headers=headers)
        assert response.status_code == 403, (data, headers)
    assert await _state(conn) == before
    # The login form itself: no CSRF token, or another origin.
    client.cookies.clear()
    form = await client.get("/dashboard/login")
    for data, headers in (
        ({"token": ADMIN}, ORIGIN),
        ({"token": ADMIN, "csrf": _csrf(form.text)}, {"Origin": "https://evil.example"}),
    ):
        refused = await client.post("/dashboard/login", data=data, headers=headers)
        assert refused.status_code == 403
        assert "mailq_session" not in refused.headers.get("set-cookie", "")
    # The same change, done right, works and is recorded.
    csrf = await sign_in(client, ADMIN)
    done = await client.post("/dashboard/kinds/welcome/pause", data={"csrf": csrf}, headers=ORIGIN)
    assert done.status_code == 303
    assert await conn.fetchval("SELECT count(*) FROM mailq.paused_kinds") == 1
    row = await conn.fetchrow("SELECT actor, action, target_type, target FROM mailq.audit_log")
    assert row["action"] == "kind.pause" and row["target"] == "welcome"
    assert row["actor"].startswith("admin ") and ADMIN not in row["actor"]


async def test_removing_a_token_ends_its_sessions_and_logout_ends_one(
    settings: Settings, client: httpx.AsyncClient
) -> None:
    await sign_in(client, ADMIN)
    cookie = client.cookies.get(sessions.COOKIE, path="/dashboard")
    assert cookie
    rotated = create_app(replace(settings, admin_tokens=("another-admin-token",)))
    async with LifespanManager(rotated) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://mailq.test") as other:
            other.cookies.set(sessions.COOKIE, cookie, path="/dashboard")
            assert (await other.get("/dashboard")).status_code == 303
    assert (await client.get("/dashboard")).status_code == 200
    csrf = _csrf((await client.get("/dashboard")).text)
    out = await client.post("/dashboard/logout", data={"csrf": csrf}, headers=ORIGIN)
    assert out.status_code == 303
    assert (await client.get("/dashboard")).status_code == 303


def test_a_session_is_valid_for_12_hours_and_its_signature_is_checked() -> None:
    tokens = auth.Tokens.of((CLIENT,), (ADMIN,), (VIEWER,))
    scope = tokens.identify(ADMIN)
    assert scope is not None

    class Service:
        secret_key = b"k"
        tokens = auth.Tokens.of((CLIENT,), (ADMIN,), (VIEWER,))

    class Request:
        def __init__(self, value: str) -> None:
            self.cookies = {sessions.COOKIE: value}

    cookie = sessions.issue(b"k", "admin", scope.scope, now=1000.0)
    assert sessions.read(Request(cookie), Service(), now=1000.0 + 11 * 3600) is not None  # type: ignore[arg-type]
    assert sessions.read(Request(cookie), Service(), now=1000.0 + 12 * 3600 + 1) is None  # type: ignore[arg-type]
    tampered = cookie[:-2] + ("AA" if not cookie.endswith("AA") else "BB")
    assert sessions.read(Request(tampered), Service(), now=1000.0) is None  # type: ignore[arg-type]


def test_a_token_file_without_a_viewer_token_gets_one_appended(tmp_path: Path) -> None:
    path = auth.token_file(tmp_path)
    path.write_text("MAILQ_API_TOKEN=c\nMAILQ_ADMIN_TOKEN=a\n")
    path.chmod(0o600)
    stored = auth.read_or_create_token_file(tmp_path)
    assert stored[auth.CLIENT_VARIABLE] == ("c",) and stored[auth.ADMIN_VARIABLE] == ("a",)
    (viewer,) = stored[auth.VIEWER_VARIABLE]
    assert viewer.startswith("mqv_")
    assert auth.read_or_create_token_file(tmp_path) == stored, "appended once"
    assert path.read_text().count("MAILQ_VIEWER_TOKEN=") == 1
