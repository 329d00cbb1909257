"""SendGrid Event Webhook: ECDSA P-256 signatures made with a key pair the test generates
(the public key given as base64 DER, as SendGrid shows it), the timestamp window, and the
documented events (data/webhooks/sendgrid/events.json)."""

from __future__ import annotations

import base64
import time

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from mailq.bounces.errors import BadSignature, MalformedWebhook, StaleTimestamp
from mailq.bounces.events import EventType, Subtype
from mailq.bounces.webhooks import webhook_from_config
from mailq.bounces.webhooks.sendgrid import SIGNATURE_HEADER, TIMESTAMP_HEADER, SendgridWebhook
from mailq.errors import ConfigError

from .conftest import DATA

PRIVATE = ec.generate_private_key(ec.SECP256R1())


def public_key_text(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> str:
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


BODY = (DATA / "webhooks" / "sendgrid" / "events.json").read_bytes()


def headers(
    body: bytes, *, key: ec.EllipticCurvePrivateKey = PRIVATE, at: float | None = None
) -> dict[str, str]:
    stamp = str(int(at if at is not None else time.time()))
    signature = key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {SIGNATURE_HEADER: base64.b64encode(signature).decode(), TIMESTAMP_HEADER: stamp}


@pytest.fixture
def webhook() -> SendgridWebhook:
    return SendgridWebhook(public_key_text(PRIVATE))


async def test_signed_events_are_accepted_and_mapped(webhook: SendgridWebhook) -> None:
    events = await webhook.receive(headers(BODY), BODY)
    kinds = [(e.type, e.subtype, e.recipient) for e in events]
    assert kinds == [
        (EventType.DEFERRED, None, "example@test.com"),
        (EventType.DELIVERED, None, "example@test.com"),
        (EventType.BOUNCED, Subtype.HARD, "example@test.com"),
        (EventType.BOUNCED, Subtype.SOFT, "blocked@test.com"),
        (EventType.BOUNCED, Subtype.HARD, "example@test.com"),  # dropped: Bounced Address
        (EventType.COMPLAINED, None, "example@test.com"),
        (EventType.UNSUBSCRIBED, None, "example@test.com"),
    ]  # processed, open and click give none
    bounce, blocked = events[2], events[3]
    assert bounce.provider_message_id == "14c5d75ce93.dfd.64b469"
    assert bounce.message_id == "<14c5d75ce93.dfd.64b469@ismtpd-555>"
    assert bounce.email_id == 8001
    assert bounce.provider_event_id == "6g4ZI7SA-xmRDv57GoPIPw=="
    assert not bounce.sender_side
    assert blocked.sender_side and blocked.status == "5.7.1"
    assert len({e.dedup_key for e in events}) == len(events)


async def test_one_changed_byte_is_refused(webhook: SendgridWebhook) -> None:
    signed = headers(BODY)
    index = BODY.index(b"unknown recipient")
    tampered = BODY[:index] + b"U" + BODY[index + 1 :]
    with pytest.raises(BadSignature):
        await webhook.receive(signed, tampered)


async def test_a_changed_timestamp_header_is_refused(webhook: SendgridWebhook) -> None:
    signed = headers(BODY)
    signed[TIMESTAMP_HEADER] = str(int(signed[TIMESTAMP_HEADER]) + 1)
    with pytest.raises(BadSignature):
        await webhook.receive(signed, BODY)


async def test_another_key_is_refused(webhook: SendgridWebhook) -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(BadSignature):
        await webhook.receive(headers(BODY, key=other), BODY)


async def test_an_old_timestamp_is_refused(webhook: SendgridWebhook) -> None:
    with pytest.raises(StaleTimestamp):
        await webhook.receive(headers(BODY, at=time.time() - 3600), BODY)


async def test_missing_headers_are_rejected(webhook: SendgridWebhook) -> None:
    with pytest.raises(MalformedWebhook):
        await webhook.receive({}, BODY)
    lowercase = {name.lower(): value for name, value in headers(BODY).items()}
    assert await webhook.receive(lowercase, BODY)


def test_the_public_key_must_be_an_ecdsa_der_key() -> None:
    with pytest.raises(ConfigError, match="public_key"):
        SendgridWebhook("not base64 !")
    with pytest.raises(ConfigError, match="elliptic"):
        SendgridWebhook(
            public_key_text(rsa.generate_private_key(public_exponent=65537, key_size=2048))
        )
    assert isinstance(
        webhook_from_config("sendgrid", {"public_key": public_key_text(PRIVATE)}), SendgridWebhook
    )
