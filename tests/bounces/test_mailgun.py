"""Mailgun webhooks: HMAC-SHA256 of timestamp + token with a signing key the test makes,
the timestamp window, reused tokens, and the documented payloads (data/webhooks/mailgun/)."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from typing import Any

import pytest

from mailq.bounces.errors import BadSignature, MalformedWebhook, ReplayedWebhook, StaleTimestamp
from mailq.bounces.events import EventType, Subtype
from mailq.bounces.webhooks import webhook_from_config
from mailq.bounces.webhooks.common import MemoryReplayGuard
from mailq.bounces.webhooks.mailgun import MailgunWebhook, mailgun_events
from mailq.errors import ConfigError

from .conftest import payload

KEY = secrets.token_hex(16)


def signed(name: str, *, key: str = KEY, timestamp: float | None = None) -> bytes:
    document: dict[str, Any] = payload(f"mailgun/{name}")
    stamp = str(int(timestamp if timestamp is not None else time.time()))
    token = secrets.token_hex(25)
    signature = hmac.new(key.encode(), (stamp + token).encode(), hashlib.sha256).hexdigest()
    document["signature"] = {"timestamp": stamp, "token": token, "signature": signature}
    return json.dumps(document).encode()


@pytest.fixture
def webhook() -> MailgunWebhook:
    return MailgunWebhook(KEY)


async def test_a_signed_request_is_accepted(webhook: MailgunWebhook) -> None:
    (event,) = await webhook.receive({}, signed("failed_permanent.json"))
    assert event.type is EventType.BOUNCED


async def test_one_changed_byte_is_refused(webhook: MailgunWebhook) -> None:
    body = signed("delivered.json")
    index = body.index(b'"timestamp": "') + len(b'"timestamp": "')
    digit = body[index : index + 1]
    tampered = body[:index] + (b"2" if digit != b"2" else b"3") + body[index + 1 :]
    with pytest.raises(BadSignature):
        await webhook.receive({}, tampered)


async def test_a_signature_with_another_key_is_refused(webhook: MailgunWebhook) -> None:
    with pytest.raises(BadSignature):
        await webhook.receive({}, signed("delivered.json", key="someone-elses-key"))


async def test_an_old_timestamp_is_refused(webhook: MailgunWebhook) -> None:
    with pytest.raises(StaleTimestamp):
        await webhook.receive({}, signed("delivered.json", timestamp=time.time() - 3600))
    with pytest.raises(StaleTimestamp):
        await webhook.receive({}, signed("delivered.json", timestamp=time.time() + 3600))
    assert await webhook.receive({}, signed("delivered.json", timestamp=time.time() - 200))


async def test_a_reused_token_is_refused(webhook: MailgunWebhook) -> None:
    body = signed("complained.json")
    assert await webhook.receive({}, body)
    with pytest.raises(ReplayedWebhook):
        await webhook.receive({}, body)


async def test_the_replay_guard_is_pluggable() -> None:
    shared = MemoryReplayGuard()
    first, second = (
        MailgunWebhook(KEY, replay_guard=shared),
        MailgunWebhook(KEY, replay_guard=shared),
    )
    body = signed("complained.json")
    assert await first.receive({}, body)
    with pytest.raises(ReplayedWebhook):
        await second.receive({}, body)


def test_memory_guard_forgets_expired_tokens_and_stays_bounded() -> None:
    guard = MemoryReplayGuard(size=3)
    assert not guard.seen("old", expires_at=time.time() - 1)
    assert not guard.seen("old", expires_at=time.time() + 60)  # the expired entry was dropped
    for n in range(10):
        guard.seen(f"t{n}", expires_at=time.time() + 60)
    assert len(guard._tokens) <= 3


@pytest.mark.parametrize("body", [b"not json", b"{}", b'{"signature": {"timestamp": "1"}}'])
async def test_unsigned_requests_are_rejected(webhook: MailgunWebhook, body: bytes) -> None:
    with pytest.raises(MalformedWebhook):
        await webhook.receive({}, body)


def test_permanent_failure() -> None:
    (event,) = mailgun_events(payload("mailgun/failed_permanent.json")["event-data"])
    assert (event.type, event.subtype, event.status) == (EventType.BOUNCED, Subtype.HARD, "5.1.1")
    assert event.recipient == "alice@example.com"
    assert event.diagnostic == "550 No Such User Here"
    assert event.message_id == "<20130503192659.13651.20287@sandbox.mailgun.org>"
    assert event.email_id == 7001
    assert event.provider_event_id == "G9Bn5sl1TC6nu79C8C0bwg"
    assert event.occurred_at is not None and event.occurred_at.year == 2018


def test_temporary_failure_complaint_delivery() -> None:
    (deferred,) = mailgun_events(payload("mailgun/failed_temporary.json")["event-data"])
    assert (deferred.type, deferred.subtype, deferred.status) == (EventType.DEFERRED, None, "4.2.2")
    (complaint,) = mailgun_events(payload("mailgun/complained.json")["event-data"])
    assert complaint.type is EventType.COMPLAINED
    (delivered,) = mailgun_events(payload("mailgun/delivered.json")["event-data"])
    assert delivered.type is EventType.DELIVERED


def test_mailguns_own_suppressions_and_esp_blocks() -> None:
    data = payload("mailgun/failed_permanent.json")["event-data"]
    (suppressed,) = mailgun_events({**data, "reason": "suppress-complaint"})
    assert suppressed.type is EventType.COMPLAINED
    (blocked,) = mailgun_events(
        {**data, "reason": "espblock", "delivery-status": {"code": 605, "message": "blocked"}}
    )
    assert blocked.sender_side
    assert mailgun_events({**data, "event": "opened"}) == []


def test_config_section() -> None:
    assert isinstance(webhook_from_config("mailgun", {"signing_key": KEY}), MailgunWebhook)
    with pytest.raises(ConfigError, match="signing_key"):
        webhook_from_config("mailgun", {"signing_key": ""})
