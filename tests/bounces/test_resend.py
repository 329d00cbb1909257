"""Resend webhooks (Svix signatures) with a `whsec_` secret the test makes, the tolerance
window, rotation (several v1 signatures), and the documented payloads (data/webhooks/resend/)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time

import pytest

from mailq.bounces.errors import BadSignature, MalformedWebhook, StaleTimestamp
from mailq.bounces.events import EventType, Subtype
from mailq.bounces.webhooks import webhook_from_config
from mailq.bounces.webhooks.resend import ResendWebhook
from mailq.errors import ConfigError

from .conftest import DATA

SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def body(name: str) -> bytes:
    return (DATA / "webhooks" / "resend" / name).read_bytes()


def svix_headers(
    data: bytes, *, secret: str = SECRET, at: float | None = None, msg_id: str = "msg_2Ko1x"
) -> dict[str, str]:
    stamp = str(int(at if at is not None else time.time()))
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{msg_id}.{stamp}.".encode() + data, hashlib.sha256).digest()
    return {
        "svix-id": msg_id,
        "svix-timestamp": stamp,
        "svix-signature": f"v1,{base64.b64encode(mac).decode()}",
    }


@pytest.fixture
def webhook() -> ResendWebhook:
    return ResendWebhook(SECRET)


async def test_documented_payloads(webhook: ResendWebhook) -> None:
    data = body("bounced.json")
    (bounce,) = await webhook.receive(svix_headers(data), data)
    assert (bounce.type, bounce.subtype, bounce.recipient) == (
        EventType.BOUNCED,
        Subtype.HARD,
        "delivered@resend.dev",
    )
    assert bounce.provider_message_id == "56761188-7520-42d8-8898-ff6fc54ce618"
    assert bounce.email_id == 9001
    assert bounce.provider_event_id == "msg_2Ko1x"
    assert bounce.diagnostic and "suppression list" in bounce.diagnostic
    expected = {
        "complained.json": EventType.COMPLAINED,
        "delivered.json": EventType.DELIVERED,
        "delivery_delayed.json": EventType.DEFERRED,
    }
    for name, event_type in expected.items():
        data = body(name)
        (event,) = await webhook.receive(svix_headers(data, msg_id=f"msg_{name}"), data)
        assert event.type is event_type


async def test_one_changed_byte_is_refused(webhook: ResendWebhook) -> None:
    data = body("complained.json")
    signed = svix_headers(data)
    with pytest.raises(BadSignature):
        await webhook.receive(signed, data.replace(b"complained", b"complaine_", 1))
    with pytest.raises(BadSignature):
        await webhook.receive({**signed, "svix-id": "msg_other"}, data)


async def test_another_secret_is_refused(webhook: ResendWebhook) -> None:
    other = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    data = body("delivered.json")
    with pytest.raises(BadSignature):
        await webhook.receive(svix_headers(data, secret=other), data)


async def test_any_one_of_several_signatures_passes(webhook: ResendWebhook) -> None:
    data = body("delivered.json")
    good = svix_headers(data)
    other = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    bad = svix_headers(data, secret=other)
    rotated = {**good, "svix-signature": f"{bad['svix-signature']} {good['svix-signature']}"}
    assert await webhook.receive(rotated, data)
    v2_only = {**good, "svix-signature": good["svix-signature"].replace("v1,", "v2,")}
    with pytest.raises(BadSignature):
        await webhook.receive(v2_only, data)


async def test_the_tolerance_window(webhook: ResendWebhook) -> None:
    data = body("delivered.json")
    with pytest.raises(StaleTimestamp):
        await webhook.receive(svix_headers(data, at=time.time() - 600), data)
    with pytest.raises(StaleTimestamp):
        await webhook.receive(svix_headers(data, at=time.time() + 600), data)
    assert await webhook.receive(svix_headers(data, at=time.time() - 240), data)


async def test_missing_headers_are_rejected(webhook: ResendWebhook) -> None:
    data = body("delivered.json")
    signed = svix_headers(data)
    for name in signed:
        partial = {key: value for key, value in signed.items() if key != name}
        with pytest.raises(MalformedWebhook):
            await webhook.receive(partial, data)


def test_the_secret_must_be_a_whsec_secret() -> None:
    with pytest.raises(ConfigError, match="secret"):
        ResendWebhook("whsec_!!!")
    with pytest.raises(ConfigError, match="secret"):
        webhook_from_config("resend", {})
    assert isinstance(webhook_from_config("resend", {"secret": SECRET}), ResendWebhook)
