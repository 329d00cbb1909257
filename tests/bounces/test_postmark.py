"""Postmark webhooks: basic auth, and the documented payloads (data/webhooks/postmark/,
sources in data/SOURCES.md) mapped to events."""

from __future__ import annotations

import base64
import json

import pytest

from mailq.bounces.errors import BadCredentials, InvalidPayload
from mailq.bounces.events import EventType, Subtype
from mailq.bounces.webhooks import webhook_from_config
from mailq.bounces.webhooks.postmark import PostmarkWebhook, postmark_events
from mailq.errors import ConfigError

from .conftest import DATA, payload

USER, PASSWORD = "mailq", "s3cret-pässword"


def auth(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@pytest.fixture
def webhook() -> PostmarkWebhook:
    return PostmarkWebhook(USER, PASSWORD)


def body(name: str) -> bytes:
    return (DATA / "webhooks" / "postmark" / name).read_bytes()


async def test_right_credentials_are_accepted(webhook: PostmarkWebhook) -> None:
    (event,) = await webhook.receive(auth(USER, PASSWORD), body("bounce.json"))
    assert event.type is EventType.BOUNCED
    # Headers are looked up without case, as HTTP requires.
    assert await webhook.receive(
        {"authorization": auth(USER, PASSWORD)["Authorization"]}, body("delivery.json")
    )


@pytest.mark.parametrize(
    "headers",
    [
        {},
        auth(USER, "wrong"),
        auth("someone", PASSWORD),
        auth(USER, PASSWORD + "x"),
        auth(USER, ""),
        {"Authorization": "Bearer abc"},
        {"Authorization": "Basic !!!"},
        {"Authorization": "Basic " + base64.b64encode(b"no-colon").decode()},
    ],
)
async def test_wrong_credentials_are_refused(
    webhook: PostmarkWebhook, headers: dict[str, str]
) -> None:
    with pytest.raises(BadCredentials):
        await webhook.receive(headers, body("bounce.json"))


async def test_credentials_come_before_the_body(webhook: PostmarkWebhook) -> None:
    with pytest.raises(BadCredentials):
        await webhook.receive({}, b"not json")
    with pytest.raises(InvalidPayload):
        await webhook.receive(auth(USER, PASSWORD), b"not json")


def test_hard_bounce() -> None:
    (event,) = postmark_events(payload("postmark/bounce.json"))
    assert (event.type, event.subtype, event.recipient) == (
        EventType.BOUNCED,
        Subtype.HARD,
        "john@example.com",
    )
    assert event.status == "5.1.1"
    assert event.provider_message_id == "883953f4-6105-42a2-a16a-77a8eac79483"
    assert event.email_id == 6001  # Metadata.mailq_email_id
    assert event.provider_event_id == "bounce/4323372036854775807"
    assert not event.sender_side


def test_soft_bounce() -> None:
    (event,) = postmark_events(payload("postmark/soft_bounce.json"))
    assert (event.subtype, event.status) == (Subtype.SOFT, "4.2.2")


def test_spam_complaint_delivery_and_unsubscribe() -> None:
    (complaint,) = postmark_events(payload("postmark/spam_complaint.json"))
    assert (complaint.type, complaint.recipient) == (EventType.COMPLAINED, "john@example.com")
    assert complaint.subtype is None
    (delivery,) = postmark_events(payload("postmark/delivery.json"))
    assert (delivery.type, delivery.recipient) == (EventType.DELIVERED, "john@example.com")
    (change,) = postmark_events(payload("postmark/subscription_change.json"))
    assert (change.type, change.recipient) == (
        EventType.UNSUBSCRIBED,
        "bounced-address@wildbit.com",
    )


def test_blocked_is_sender_side_and_autoresponders_are_ignored() -> None:
    record = payload("postmark/bounce.json")
    blocked = {**record, "Type": "Blocked", "TypeCode": 100006, "Details": "ISP block"}
    (event,) = postmark_events(blocked)
    assert event.sender_side
    assert postmark_events({**record, "Type": "AutoResponder", "TypeCode": 64}) == []
    reactivated = {**payload("postmark/subscription_change.json"), "SuppressSending": False}
    assert postmark_events(reactivated) == []
    hard_suppression = {
        **payload("postmark/subscription_change.json"),
        "SuppressionReason": "HardBounce",
    }
    assert postmark_events(hard_suppression) == []  # its Bounce record is the event


def test_config_section() -> None:
    built = webhook_from_config("postmark", {"username": USER, "password": PASSWORD})
    assert isinstance(built, PostmarkWebhook)
    with pytest.raises(ConfigError, match="password"):
        webhook_from_config("postmark", {"username": USER})


def test_payloads_are_json() -> None:
    for path in (DATA / "webhooks" / "postmark").glob("*.json"):
        assert isinstance(json.loads(path.read_text()), dict)
