"""`POST /v1/webhooks/{provider}` through the app on a real Postgres: each provider's request,
signed with a key or certificate the test makes, is recorded once however often it comes;
one changed byte, an old timestamp or a topic not allowed → 401 and nothing recorded; a
provider without a section → 404."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from asgi_lifespan import LifespanManager
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

import mailq
from mailq.bounces.webhooks.sendgrid import SIGNATURE_HEADER, TIMESTAMP_HEADER
from mailq.bounces.webhooks.ses import SesWebhook
from mailq.config import Config
from mailq.service.app import create_app
from mailq.service.routes.webhooks import webhooks_from_config
from mailq.settings import Settings
from tests.bounces.conftest import DATA, payload
from tests.bounces.sns_support import (
    OTHER_TOPIC,
    TOPIC,
    SnsServer,
    SnsSigner,
    make_certificate,
    pem,
    serve,
)
from tests.bounces.test_sendgrid import public_key_text
from tests.support.emails import welcome

from .conftest import AS_ADMIN

MAILGUN_KEY = secrets.token_hex(16)
RESEND_SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
SENDGRID_KEY = ec.generate_private_key(ec.SECP256R1())
SNS_KEY, SNS_CERT = make_certificate("sns.amazonaws.com")
CERT_PATH = "/SimpleNotificationService-test.pem"
SUBSCRIBE_PATH = "/confirm"
OLD = 3 * 3600.0  # seconds: past every provider's window


def flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]


@dataclass
class Provider:
    """How one provider's requests are made: `sign(age_s)` → (headers, body); `tamper` changes
    one byte of what the signature covers."""

    name: str
    sign: Callable[[float], tuple[dict[str, str], bytes]]
    tamper: Callable[[dict[str, str], bytes], tuple[dict[str, str], bytes]]
    ages: bool = True  # has a signed timestamp


def _postmark(email_id: int) -> Provider:
    record = payload("postmark/bounce.json")
    record["Metadata"] = {"mailq_email_id": str(email_id)}
    record["Email"] = "bounced@example.com"
    body = json.dumps(record).encode()
    auth = "Basic " + base64.b64encode(b"mailq:pm-secret").decode()
    return Provider(
        "postmark",
        lambda _age: ({"Authorization": auth}, body),
        lambda h, b: (
            {"Authorization": "Basic " + base64.b64encode(b"mailq:pm-secreu").decode()},
            b,
        ),
        ages=False,
    )


def _mailgun_sign(age: float) -> tuple[dict[str, str], bytes]:
    document: dict[str, Any] = payload("mailgun/failed_permanent.json")
    stamp, token = str(int(time.time() - age)), secrets.token_hex(25)
    mac = hmac.new(MAILGUN_KEY.encode(), (stamp + token).encode(), hashlib.sha256).hexdigest()
    document["signature"] = {"timestamp": stamp, "token": token, "signature": mac}
    return {"Content-Type": "application/json"}, json.dumps(document).encode()


def _mailgun_tamper(headers: dict[str, str], body: bytes) -> tuple[dict[str, str], bytes]:
    # Mailgun signs timestamp + token (not the event): change a byte of the token.
    return headers, flip(body, body.index(b'"token": "') + 12)


def _sendgrid_sign(age: float) -> tuple[dict[str, str], bytes]:
    body = (DATA / "webhooks" / "sendgrid" / "events.json").read_bytes()
    stamp = str(int(time.time() - age))
    signature = SENDGRID_KEY.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {SIGNATURE_HEADER: base64.b64encode(signature).decode(), TIMESTAMP_HEADER: stamp}, body


def _resend_sign(age: float) -> tuple[dict[str, str], bytes]:
    body = (DATA / "webhooks" / "resend" / "bounced.json").read_bytes()
    stamp, msg_id = str(int(time.time() - age)), "msg_2Ko1xService"
    key = base64.b64decode(RESEND_SECRET.removeprefix("whsec_"))
    mac = hmac.new(key, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
    headers = {"svix-id": msg_id, "svix-timestamp": stamp}
    return {**headers, "svix-signature": f"v1,{base64.b64encode(mac).decode()}"}, body


def _ses(signer: SnsSigner) -> Provider:
    def sign(age: float) -> tuple[dict[str, str], bytes]:
        at = datetime.now(UTC) - timedelta(seconds=age)
        return {}, signer.notification(payload("ses/bounce_notification.json"), timestamp=at)

    return Provider("ses", sign, lambda h, b: (h, flip(b, b.index(b"bounceType") + 3)))


def _last_byte(headers: dict[str, str], body: bytes) -> tuple[dict[str, str], bytes]:
    return headers, flip(body, len(body) // 2)


@pytest.fixture(scope="module")
def sns() -> Iterator[SnsServer]:
    yield from serve({CERT_PATH: pem(SNS_CERT), SUBSCRIBE_PATH: b"<ConfirmSubscriptionResponse/>"})


@pytest.fixture
async def email_id(conn: asyncpg.Connection) -> int:
    [sent] = await mailq.enqueue(conn, welcome(1, to="bounced@example.com"))
    await conn.execute(
        "UPDATE mailq.emails SET status = 'sent', attempts = 1, finished_at = now() WHERE id = $1",
        sent,
    )
    return sent


@pytest.fixture
def providers(sns: SnsServer, email_id: int) -> dict[str, Provider]:
    signer = SnsSigner(SNS_KEY, sns.url(CERT_PATH))
    return {
        "ses": _ses(signer),
        "postmark": _postmark(email_id),
        "mailgun": Provider("mailgun", _mailgun_sign, _mailgun_tamper),
        "sendgrid": Provider("sendgrid", _sendgrid_sign, _last_byte),
        "resend": Provider("resend", _resend_sign, _last_byte),
    }


@pytest.fixture
async def client(settings: Settings, sns: SnsServer) -> AsyncIterator[httpx.AsyncClient]:
    config = Config(
        webhooks={
            "postmark": {"username": "mailq", "password": "pm-secret"},
            "mailgun": {"signing_key": MAILGUN_KEY},
            "sendgrid": {"public_key": public_key_text(SENDGRID_KEY)},
            "resend": {"secret": RESEND_SECRET},
        }
    )
    sns.requests.clear()
    fetcher = httpx.AsyncClient(verify=sns.tls_context, timeout=10)
    hooks = webhooks_from_config(config)
    # The host pin relaxed to the loopback server, for this test only (not configurable).
    hooks["ses"] = SesWebhook(
        [TOPIC], client=fetcher, host_rule=lambda netloc, _region: netloc == sns.netloc
    )
    app = create_app(settings, config=config, webhooks=hooks)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://mailq.test") as http:
            yield http
    await fetcher.aclose()


async def events(conn: asyncpg.Connection) -> int:
    return await conn.fetchval("SELECT count(*) FROM mailq.events")


NAMES = ["ses", "postmark", "mailgun", "sendgrid", "resend"]


@pytest.mark.parametrize("name", NAMES)
async def test_a_verified_request_is_recorded_once_and_a_changed_byte_is_refused(
    name: str, client: httpx.AsyncClient, providers: dict[str, Provider], conn: asyncpg.Connection
) -> None:
    provider = providers[name]
    headers, body = provider.sign(0)
    bad_headers, bad_body = provider.tamper(headers, body)
    refused = await client.post(f"/v1/webhooks/{name}", headers=bad_headers, content=bad_body)
    assert refused.status_code == 401, refused.text
    assert await events(conn) == 0
    if provider.ages:
        old_headers, old_body = provider.sign(OLD)
        stale = await client.post(f"/v1/webhooks/{name}", headers=old_headers, content=old_body)
        assert stale.status_code == 401 and "timestamp" in stale.json()["error"]
        assert await events(conn) == 0
    first = await client.post(f"/v1/webhooks/{name}", headers=headers, content=body)
    assert first.status_code == 200, first.text
    recorded = first.json()["recorded"]
    assert recorded >= 1
    again = await client.post(f"/v1/webhooks/{name}", headers=headers, content=body)
    assert again.json() == {"events": recorded, "recorded": 0, "duplicates": recorded}
    assert await events(conn) == recorded


async def test_the_email_named_by_a_webhook_shows_the_bounce(
    client: httpx.AsyncClient, providers: dict[str, Provider], email_id: int
) -> None:
    headers, body = providers["postmark"].sign(0)
    assert (await client.post("/v1/webhooks/postmark", headers=headers, content=body)).json()[
        "recorded"
    ] == 1
    shown = (await client.get(f"/v1/emails/{email_id}", headers=AS_ADMIN)).json()
    assert [(e["type"], e["subtype"], e["provider"]) for e in shown["events"]] == [
        ("bounced", "hard", "postmark")
    ]
    listed = (await client.get("/v1/events?type=bounced", headers=AS_ADMIN)).json()
    assert [e["email_id"] for e in listed["events"]] == [email_id]
    suppressed = await client.get("/v1/suppressions/bounced@example.com", headers=AS_ADMIN)
    assert "hard bounce (postmark)" in suppressed.json()["reason"]


async def test_sns_topics_and_subscriptions(
    client: httpx.AsyncClient, sns: SnsServer, conn: asyncpg.Connection
) -> None:
    signer = SnsSigner(SNS_KEY, sns.url(CERT_PATH))
    other = signer.notification(payload("ses/bounce_notification.json"), topic=OTHER_TOPIC)
    refused = await client.post("/v1/webhooks/ses", content=other)
    assert refused.status_code == 401 and "topic" in refused.json()["error"]
    foreign = signer.confirmation(sns.url(SUBSCRIBE_PATH), topic=OTHER_TOPIC)
    assert (await client.post("/v1/webhooks/ses", content=foreign)).status_code == 401
    assert sns.requests == []  # nothing fetched for a topic not allowed
    confirm = signer.confirmation(sns.url(SUBSCRIBE_PATH))
    assert (await client.post("/v1/webhooks/ses", content=confirm)).status_code == 200
    assert sns.requests == [CERT_PATH, SUBSCRIBE_PATH]
    notification = signer.notification(payload("ses/complaint_notification.json"))
    assert (await client.post("/v1/webhooks/ses", content=notification)).status_code == 200
    assert sns.requests == [CERT_PATH, SUBSCRIBE_PATH]  # the certificate was cached
    assert await events(conn) == 1


async def test_a_provider_without_its_section_is_not_found(
    settings: Settings,
) -> None:
    app = create_app(settings, config=Config())
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://mailq.test") as http:
            answer = await http.post("/v1/webhooks/postmark", content=b"{}")
    assert answer.status_code == 404
