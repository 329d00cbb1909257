"""Unsubscribe over HTTP: the confirmation page, RFC 8058 one-click, bad tokens; and end to
end, the List-Unsubscribe URL of an email a real worker sent works against the service."""

from __future__ import annotations

import asyncio
import email.policy
import re
from dataclasses import replace
from email.parser import BytesParser

import asyncpg
import httpx
import pytest

from mailq.compose.unsubscribe import SECRET_FILE, load_secret_key, make_token
from mailq.delivery.local import RecordingSender
from mailq.settings import Settings
from mailq.worker.worker import Worker
from tests.service.conftest import AS_ADMIN, AS_CLIENT

PUBLIC_URL = "https://mail.example.com"
ONE_CLICK = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # No MAILQ_SECRET_KEY: the service and the worker share $MAILQ_HOME/secret_key.
    return replace(settings, public_url=PUBLIC_URL, secret_key=None)


def token_for(settings: Settings, address: str) -> str:
    return make_token(load_secret_key(settings), address)


async def suppressed(conn: asyncpg.Connection) -> list[str]:
    return [r["address"] for r in await conn.fetch("SELECT address FROM mailq.suppressions")]


async def test_the_page_confirms_and_changes_nothing(
    client: httpx.AsyncClient, settings: Settings, conn: asyncpg.Connection
) -> None:
    token = token_for(settings, "Ann@Example.com")
    page = await client.get(f"/v1/unsubscribe/{token}")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["referrer-policy"] == "no-referrer"
    assert "ann@example.com" in page.text
    assert re.search(r'<form method="post">.*name="confirm" value="yes"', page.text)
    assert await suppressed(conn) == [], "a GET (a link scanner) must not unsubscribe"

    # The form's post, from a browser: an HTML answer.
    posted = await client.post(
        f"/v1/unsubscribe/{token}",
        content=b"confirm=yes",
        headers={**ONE_CLICK, "Accept": "text/html,*/*"},
    )
    assert posted.status_code == 200
    assert posted.headers["content-type"].startswith("text/html")
    assert "ann@example.com" in posted.text
    assert await suppressed(conn) == ["ann@example.com"]


async def test_one_click_suppresses_and_cancels_waiting_emails(
    client: httpx.AsyncClient, settings: Settings, conn: asyncpg.Connection
) -> None:
    queued = await client.post(
        "/v1/emails",
        json={"to": "bob@example.com", "kind": "search_engine", "subject": "s", "text": "t"},
        headers=AS_CLIENT,
    )
    token = token_for(settings, "bob@example.com")
    for _ in range(2):  # a second click is harmless
        response = await client.post(
            f"/v1/unsubscribe/{token}", content=b"List-Unsubscribe=One-Click", headers=ONE_CLICK
        )
        assert response.status_code == 200
        assert response.json() == {"address": "bob@example.com", "unsubscribed": True}
    assert await suppressed(conn) == ["bob@example.com"]
    view = (await client.get(f"/v1/emails/{queued.json()['id']}", headers=AS_CLIENT)).json()
    assert view["state"] == "cancelled"
    multipart = await client.post(
        f"/v1/unsubscribe/{token_for(settings, 'cy@example.com')}",
        files={"List-Unsubscribe": (None, "One-Click")},
    )
    assert multipart.status_code == 200
    assert sorted(await suppressed(conn)) == ["bob@example.com", "cy@example.com"]


@pytest.mark.parametrize(
    "token",
    [
        "nonsense",
        "a.b.c",
        "!!!.???",
        "YW5uQGV4YW1wbGUuY29t.AAAAAAAAAAAAAAAAAAAAAA",  # ann@example.com, forged signature
        "x" * 2000,
    ],
)
async def test_a_bad_or_forged_token_is_400_never_500(
    client: httpx.AsyncClient, conn: asyncpg.Connection, token: str
) -> None:
    page = await client.get(f"/v1/unsubscribe/{token}")
    assert page.status_code == 400
    assert "not valid" in page.text
    one_click = await client.post(
        f"/v1/unsubscribe/{token}", content=b"List-Unsubscribe=One-Click", headers=ONE_CLICK
    )
    assert one_click.status_code == 400
    assert "unsubscribe token" in one_click.json()["error"]
    browser = await client.post(
        f"/v1/unsubscribe/{token}",
        content=b"confirm=yes",
        headers={**ONE_CLICK, "Accept": "text/html"},
    )
    assert browser.status_code == 400 and "not valid" in browser.text
    assert await suppressed(conn) == []


async def test_a_token_signed_with_another_key_is_refused(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    token = make_token(b"another-key", "ann@example.com")
    response = await client.post(
        f"/v1/unsubscribe/{token}", content=b"List-Unsubscribe=One-Click", headers=ONE_CLICK
    )
    assert response.status_code == 400
    assert await suppressed(conn) == []


@pytest.mark.parametrize(
    "body", [b"", b"List-Unsubscribe=Yes", b"confirm=no", b"\xff\xfe", b"x" * 20_000]
)
async def test_a_post_without_the_one_click_body_is_refused(
    client: httpx.AsyncClient, settings: Settings, conn: asyncpg.Connection, body: bytes
) -> None:
    token = token_for(settings, "ann@example.com")
    response = await client.post(f"/v1/unsubscribe/{token}", content=body, headers=ONE_CLICK)
    assert response.status_code in (400, 413)
    assert "body" in response.json()["error"]
    assert await suppressed(conn) == []


async def test_the_one_click_url_of_a_sent_campaign_email_works(
    client: httpx.AsyncClient, settings: Settings, conn: asyncpg.Connection
) -> None:
    created = await client.post(
        "/v1/campaigns",
        json={
            "name": "Launch",
            "kind": "platform_complete",
            "subject": "Hi {{ name }}",
            "text": "Unsubscribe: {{ unsubscribe_url }}",
            "recipients": [
                {"email": "Ann@example.com", "context": {"name": "Ann"}},
                {"email": "bo@example.com", "context": {"name": "Bo"}},
            ],
        },
        headers=AS_CLIENT,
    )
    assert created.status_code == 201, created.text
    sender = RecordingSender()
    # A real worker, with the service's settings: the same MAILQ_HOME, so the same key.
    assert settings.secret_key is None and (settings.home / SECRET_FILE).exists()
    worker = Worker(settings, sender)
    await asyncio.wait_for(worker.run(until_empty=True), timeout=30)
    assert len(sender.sent) == 2
    sent = {
        m.to.lower(): BytesParser(policy=email.policy.default).parsebytes(m.data)
        for m in sender.sent
    }
    message = sent["ann@example.com"]
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url = next(
        part.strip(" <>")
        for part in str(message["List-Unsubscribe"]).split(",")
        if part.strip(" <").startswith("https:")
    )
    assert url.startswith(f"{PUBLIC_URL}/v1/unsubscribe/")
    assert url in message.get_body(("plain",)).get_content()

    # What a mailbox provider does with it (RFC 8058): POST the body to the URL.
    path = url.removeprefix(PUBLIC_URL)
    response = await client.post(path, content=b"List-Unsubscribe=One-Click", headers=ONE_CLICK)
    assert response.status_code == 200, response.text
    assert response.json()["address"] == "ann@example.com"
    listed = await client.get("/v1/suppressions/ann@example.com", headers=AS_ADMIN)
    assert listed.status_code == 200

    # Ann gets nothing more; a later campaign stores her email cancelled, Bo's goes out.
    later = await client.post(
        "/v1/campaigns",
        json={
            "name": "Follow-up",
            "kind": "platform_complete",
            "subject": "Again",
            "text": "t",
            "recipients": [{"email": "ann@example.com"}, {"email": "bo@example.com"}],
        },
        headers=AS_CLIENT,
    )
    assert later.json()["suppressed"] == 1
    await asyncio.wait_for(Worker(settings, sender).run(until_empty=True), timeout=30)
    assert [m.to for m in sender.sent[2:]] == ["bo@example.com"]
