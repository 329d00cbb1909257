"""Bad requests are refused at the edge with {"error": …} naming the field, and nothing is
stored."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from mailq.service.state import Limits
from tests.service.conftest import AS_CLIENT, email

ATTACHMENTS_LIMIT = 1000


@pytest.fixture
def limits() -> Limits:
    return Limits(body_bytes=64 * 1024, batch_emails=20, attachments_bytes=ATTACHMENTS_LIMIT)


def _attachment(size: int) -> dict[str, str]:
    return {
        "filename": "a.bin",
        "content_type": "application/octet-stream",
        "content_base64": base64.b64encode(b"x" * size).decode(),
    }


BAD_EMAILS: list[tuple[dict[str, Any], int, str]] = [
    (email(surprise=1), 422, "surprise"),
    (email(to="not-an-address"), 422, "to"),
    (email(to="a@example.com\r\nBcc: victim@example.com"), 422, "to"),
    (email(cc=["ok@example.com", "bad@@example.com"]), 422, "cc[1]"),
    (email(cc="one@example.com"), 422, "cc"),
    (email(subject="Hi\r\nBcc: x@example.com"), 422, "subject"),
    (email(subject="Hi\nthere"), 422, "subject"),
    (email(subject="Hi\x00"), 422, "subject"),
    (email(text="body\x00"), 422, "text"),
    (email(headers={"X-Tag": "a\r\nBcc: x@example.com"}), 422, "headers.X-Tag"),
    (email(headers={"X-Tag": "a\x00"}), 422, "headers.X-Tag"),
    (email(headers={"Bad Name": "a"}), 422, "headers"),
    (email(**{"from": "me@example.com\n"}), 422, "from"),
    (email(send_at="tomorrow"), 422, "send_at"),
    (email(send_at="2030-01-01T00:00:00"), 422, "send_at"),
    (email(send_at="20300101T000000Z"), 422, "send_at"),
    (email(send_at="9999-12-31T23:59:59Z"), 422, "send_at"),
    (email(send_at="1900-01-01T00:00:00Z"), 422, "send_at"),
    (email(send_at=12), 422, "send_at"),
    (email(priority=10), 422, "priority"),
    (email(priority=-1), 422, "priority"),
    (email(priority=2**70), 422, "priority"),
    (email(priority="1"), 422, "priority"),
    (email(priority=True), 422, "priority"),
    (email(subject="Hi {{ missing }}"), 422, "subject"),
    (email(text="Hi {{ name }} {{ surname }}"), 422, "text"),
    (email(subject=None), 422, "subject"),
    (email(text=None), 422, "text"),
    (email(kind="Not A Kind"), 422, "kind"),
    (email(metadata={"nested": {"a": 1}}), 422, "metadata.nested"),
    (email(metadata=[1]), 422, "metadata"),
    (email(attachments=[_attachment(ATTACHMENTS_LIMIT + 1)]), 422, "attachments"),
    (email(attachments=[_attachment(600), _attachment(600)]), 422, "attachments"),
    (email(attachments=[{"filename": "a", "content_type": "text/plain"}]), 422, "attachments[0]"),
    (
        email(attachments=[{**_attachment(1), "content_base64": "***"}]),
        422,
        "attachments[0].content_base64",
    ),
    (email(attachments=[{**_attachment(1), "filename": "a\r\nb"}]), 422, "attachments[0]"),
]


@pytest.mark.parametrize(("body", "status", "field"), BAD_EMAILS)
async def test_a_bad_email_is_refused_and_nothing_is_stored(
    client: httpx.AsyncClient,
    conn: asyncpg.Connection,
    body: dict[str, Any],
    status: int,
    field: str,
) -> None:
    response = await client.post("/v1/emails", json=body, headers=AS_CLIENT)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error.startswith(field), error
    assert await conn.fetchval("SELECT count(*) FROM mailq.emails") == 0


BAD_BODIES: list[tuple[bytes, str]] = [
    (b"{", "body: not JSON"),
    (b"", "body"),
    (b"[1, 2]", "body"),
    (b'"just a string"', "body"),
    (b"\xff\xfe{}", "body: not UTF-8"),
    (b'{"to": "a@example.com", "priority": NaN}', "body"),
    (b'{"to": "a@example.com", "priority": 1e999}', "body"),
    (b'{"to": "a@example.com", "subject": "x\\ud800"}', "subject"),
    (b'{"to": "a@example.com", "metadata": {"k": "\\udc00"}}', "metadata.k"),
    (b"[" * 60_000, "body"),
    (b'{"to": 1' + b"0" * 5000 + b"}", "body"),
]


@pytest.mark.parametrize(("raw", "prefix"), BAD_BODIES)
async def test_a_malformed_body_is_400(
    client: httpx.AsyncClient, conn: asyncpg.Connection, raw: bytes, prefix: str
) -> None:
    response = await client.post(
        "/v1/emails",
        content=raw,
        headers={**AS_CLIENT, "Content-Type": "application/json"},
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"].startswith(prefix), response.json()
    assert await conn.fetchval("SELECT count(*) FROM mailq.emails") == 0


async def test_a_batch_is_all_or_nothing(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    emails = [email(n) for n in range(5)]
    emails[3]["to"] = "broken"
    response = await client.post("/v1/emails/batch", json={"emails": emails}, headers=AS_CLIENT)
    assert response.status_code == 422
    assert response.json()["error"].startswith("emails[3].to:")
    assert await conn.fetchval("SELECT count(*) FROM mailq.emails") == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"emails": [email(n) for n in range(21)]}, "emails: at most 20"),
        ({"emails": []}, "emails"),
        ({"emails": "x"}, "emails"),
        ({}, "emails"),
        ({"emails": [email()], "extra": 1}, "extra"),
        ({"emails": [email(), 5]}, "emails[1]"),
        ({"emails": [email(), email(send_at="soon")]}, "emails[1].send_at"),
        ({"emails": [email(cc=["x"])]}, "emails[0].cc[0]"),
    ],
)
async def test_bad_batches(
    client: httpx.AsyncClient, conn: asyncpg.Connection, body: dict[str, Any], field: str
) -> None:
    response = await client.post("/v1/emails/batch", json=body, headers=AS_CLIENT)
    assert response.status_code == 422, response.text
    assert response.json()["error"].startswith(field), response.json()
    assert await conn.fetchval("SELECT count(*) FROM mailq.emails") == 0


async def test_a_body_over_the_limit_is_413_from_its_length(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    body = email(text="x" * 70 * 1024)
    response = await client.post("/v1/emails", json=body, headers=AS_CLIENT)
    assert response.status_code == 413
    assert response.json()["error"].startswith("body:")
    assert await conn.fetchval("SELECT count(*) FROM mailq.emails") == 0


async def test_a_streamed_body_over_the_limit_is_413_without_reading_it_all(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    chunk = b" " * 8192
    sent = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal sent
        yield b'{"to": "a@example.com", "text": "'
        for _ in range(10_000):  # 80 MB if it were all read
            sent += 1
            yield chunk

    response = await client.post(
        "/v1/emails",
        content=endless(),
        headers={**AS_CLIENT, "Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert sent < 20, f"{sent} chunks were read for a 64 KiB limit"
    assert await conn.fetchval("SELECT count(*) FROM mailq.emails") == 0


async def test_a_bad_content_length_is_400(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/emails",
        content=json.dumps(email()).encode(),
        headers={**AS_CLIENT, "Content-Length": "-5"},
    )
    assert response.status_code == 400
