"""SES through SNS: verified against a signing certificate the test makes, served by a real
HTTPS server on loopback (the host-pinning rule relaxed to that server for these tests only);
refused when a byte changes, when the timestamp is old, when the topic is not allowed, when the
certificate URL is not an SNS host. Payloads: data/webhooks/ses/ (sources in data/SOURCES.md)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from mailq.bounces.errors import (
    BadSignature,
    MalformedWebhook,
    StaleTimestamp,
    TopicNotAllowed,
    UntrustedCertificateUrl,
    WebhookRejected,
    WebhookUnavailable,
)
from mailq.bounces.events import EventType, Subtype
from mailq.bounces.webhooks import webhook_from_config
from mailq.bounces.webhooks.ses import (
    SesWebhook,
    region_of,
    ses_events,
    sns_host_allowed,
    string_to_sign,
)
from mailq.errors import ConfigError

from .conftest import payload
from .sns_support import (
    OTHER_TOPIC,
    TOPIC,
    SnsServer,
    SnsSigner,
    canonical,
    make_certificate,
    pem,
    serve,
)

CERT_PATH = "/SimpleNotificationService-0000000000000000000000.pem"
OTHER_CERT_PATH = "/SimpleNotificationService-other.pem"
EXPIRED_CERT_PATH = "/SimpleNotificationService-expired.pem"
SUBSCRIBE_PATH = "/confirm"

_KEY, _CERT = make_certificate("sns.amazonaws.com")
_OTHER_KEY, _OTHER_CERT = make_certificate("sns.amazonaws.com")
_EXPIRED_KEY, _EXPIRED_CERT = make_certificate(
    "sns.amazonaws.com", not_before=datetime.now(UTC) - timedelta(days=3), days=1
)


@pytest.fixture(scope="module")
def sns() -> Iterator[SnsServer]:
    files = {
        CERT_PATH: pem(_CERT),
        OTHER_CERT_PATH: pem(_OTHER_CERT),
        EXPIRED_CERT_PATH: pem(_EXPIRED_CERT),
        SUBSCRIBE_PATH: b"<ConfirmSubscriptionResponse/>",
    }
    yield from serve(files)


@pytest.fixture
async def client(sns: SnsServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(verify=sns.tls_context, timeout=10) as http:
        yield http


@pytest.fixture
def webhook(sns: SnsServer, client: httpx.AsyncClient) -> SesWebhook:
    sns.requests.clear()
    return SesWebhook([TOPIC], client=client, host_rule=lambda netloc, region: netloc == sns.netloc)


@pytest.fixture
def signer(sns: SnsServer) -> SnsSigner:
    return SnsSigner(_KEY, sns.url(CERT_PATH))


@pytest.mark.parametrize("version", ["1", "2"])
async def test_both_signature_versions_verify(
    webhook: SesWebhook, signer: SnsSigner, version: str
) -> None:
    body = signer.notification(payload("ses/bounce_notification.json"), version=version)
    (event,) = await webhook.receive({}, body)
    assert event.type is EventType.BOUNCED
    assert event.provider == "ses"


async def test_subject_is_part_of_the_signed_string(webhook: SesWebhook, signer: SnsSigner) -> None:
    body = signer.notification(payload("ses/delivery_notification.json"), subject="Delivery")
    assert len(await webhook.receive({}, body)) == 1
    tampered = body.replace(b'"Subject": "Delivery"', b'"Subject": "Delivers"')
    with pytest.raises(BadSignature):
        await webhook.receive({}, tampered)


async def test_one_changed_byte_is_refused(webhook: SesWebhook, signer: SnsSigner) -> None:
    body = signer.notification(payload("ses/bounce_notification.json"))
    assert await webhook.receive({}, body)
    index = body.index(b"jane@example.com")
    tampered = body[:index] + b"J" + body[index + 1 :]
    with pytest.raises(BadSignature):
        await webhook.receive({}, tampered)


async def test_a_signature_by_another_key_is_refused(webhook: SesWebhook, sns: SnsServer) -> None:
    impostor = SnsSigner(_OTHER_KEY, sns.url(CERT_PATH))  # claims the real certificate
    with pytest.raises(BadSignature):
        await webhook.receive({}, impostor.notification(payload("ses/bounce_event.json")))


async def test_an_old_timestamp_is_refused_before_any_fetch(
    webhook: SesWebhook, signer: SnsSigner, sns: SnsServer
) -> None:
    old = datetime.now(UTC) - timedelta(hours=2)
    body = signer.notification(payload("ses/bounce_event.json"), timestamp=old)
    with pytest.raises(StaleTimestamp):
        await webhook.receive({}, body)
    assert sns.requests == []
    recent = datetime.now(UTC) - timedelta(minutes=50)  # within SNS's hour of retries
    body = signer.notification(payload("ses/bounce_event.json"), timestamp=recent)
    assert await webhook.receive({}, body)


async def test_a_topic_not_listed_is_refused_before_any_fetch(
    webhook: SesWebhook, signer: SnsSigner, sns: SnsServer
) -> None:
    body = signer.notification(payload("ses/bounce_event.json"), topic=OTHER_TOPIC)
    with pytest.raises(TopicNotAllowed):
        await webhook.receive({}, body)
    confirmation = signer.confirmation(sns.url(SUBSCRIBE_PATH), topic=OTHER_TOPIC)
    with pytest.raises(TopicNotAllowed):
        await webhook.receive({}, confirmation)
    assert sns.requests == []  # neither the certificate nor the SubscribeURL was fetched


@pytest.mark.parametrize(
    "cert_url",
    [
        "https://s3.amazonaws.com/SimpleNotificationService-x.pem",  # novuhq/novu#11056
        "https://sns.us-east-1.amazonaws.com.evil.example/SimpleNotificationService-x.pem",
        "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-x.pem",  # not the region
        "http://sns.us-east-1.amazonaws.com/SimpleNotificationService-x.pem",
        "https://user@sns.us-east-1.amazonaws.com/SimpleNotificationService-x.pem",
        "https://sns.us-east-1.amazonaws.com:8443/SimpleNotificationService-x.pem",
        "https://sns.us-east-1.amazonaws.com/not-a-certificate",
        "https://evil.example/sns.us-east-1.amazonaws.com/x.pem",
    ],
)
async def test_certificate_url_must_be_the_regions_sns_host(cert_url: str) -> None:
    strict = SesWebhook([TOPIC])  # the production rule; fails before any network access
    signer = SnsSigner(_KEY, cert_url)
    with pytest.raises(UntrustedCertificateUrl):
        await strict.receive({}, signer.notification(payload("ses/bounce_event.json")))
    await strict.aclose()


async def test_https_is_required_even_with_the_relaxed_rule(
    webhook: SesWebhook, sns: SnsServer
) -> None:
    signer = SnsSigner(_KEY, f"http://{sns.netloc}{CERT_PATH}")
    with pytest.raises(UntrustedCertificateUrl):
        await webhook.receive({}, signer.notification(payload("ses/bounce_event.json")))
    assert sns.requests == []


def test_default_host_rule() -> None:
    assert sns_host_allowed("sns.us-east-1.amazonaws.com", "us-east-1")
    assert sns_host_allowed("SNS.US-EAST-1.AMAZONAWS.COM", "us-east-1")
    assert sns_host_allowed("sns.cn-north-1.amazonaws.com.cn", "cn-north-1")
    assert not sns_host_allowed("sns.us-east-1.amazonaws.com", "us-west-2")
    assert not sns_host_allowed("sns.us-east-1.amazonaws.com:443", "us-east-1")
    assert not sns_host_allowed("127.0.0.1", "us-east-1")
    assert region_of("arn:aws:sns:eu-central-1:123456789012:t") == "eu-central-1"
    assert region_of("arn:aws-cn:sns:cn-north-1:123456789012:t") == "cn-north-1"
    assert region_of("arn:aws:sqs:eu-central-1:123456789012:t") is None


async def test_certificates_are_cached(
    webhook: SesWebhook, signer: SnsSigner, sns: SnsServer
) -> None:
    for name in ("ses/bounce_event.json", "ses/complaint_event.json", "ses/delivery_event.json"):
        assert await webhook.receive({}, signer.notification(payload(name)))
    assert sns.requests == [CERT_PATH]


async def test_unreachable_certificate_is_unavailable_not_rejected(
    webhook: SesWebhook, sns: SnsServer
) -> None:
    signer = SnsSigner(_KEY, sns.url("/SimpleNotificationService-missing.pem"))
    with pytest.raises(WebhookUnavailable):
        await webhook.receive({}, signer.notification(payload("ses/bounce_event.json")))


async def test_an_expired_certificate_is_refused(webhook: SesWebhook, sns: SnsServer) -> None:
    signer = SnsSigner(_EXPIRED_KEY, sns.url(EXPIRED_CERT_PATH))
    with pytest.raises(BadSignature, match="validity"):
        await webhook.receive({}, signer.notification(payload("ses/bounce_event.json")))


async def test_subscription_is_confirmed_for_an_allowed_topic(
    webhook: SesWebhook, signer: SnsSigner, sns: SnsServer
) -> None:
    url = sns.url(f"{SUBSCRIBE_PATH}?Action=ConfirmSubscription&TopicArn={TOPIC}&Token=abc")
    assert await webhook.receive({}, signer.confirmation(url, version="2")) == ()
    assert sns.requests == [CERT_PATH, url.removeprefix(f"https://{sns.netloc}")]


async def test_subscribe_url_must_be_an_sns_host_too(
    webhook: SesWebhook, signer: SnsSigner, sns: SnsServer
) -> None:
    body = signer.confirmation("https://attacker.example/confirm")
    with pytest.raises(UntrustedCertificateUrl):
        await webhook.receive({}, body)
    assert SUBSCRIBE_PATH not in "".join(sns.requests)


async def test_unsubscribe_confirmation_is_verified_and_ignored(
    webhook: SesWebhook, signer: SnsSigner, sns: SnsServer
) -> None:
    body = signer.confirmation(sns.url(SUBSCRIBE_PATH), kind="UnsubscribeConfirmation")
    assert await webhook.receive({}, body) == ()
    assert sns.requests == [CERT_PATH]  # verified, but the SubscribeURL was not visited
    tampered = body.replace(b"You have chosen", b"You have chosem")
    with pytest.raises(BadSignature):
        await webhook.receive({}, tampered)


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[]", b'{"Type": "Nonsense"}', b'{"Type": "Notification"}'],
)
async def test_malformed_requests_are_rejected(webhook: SesWebhook, body: bytes) -> None:
    with pytest.raises(WebhookRejected):
        await webhook.receive({}, body)


async def test_unknown_signature_version_is_rejected(
    webhook: SesWebhook, signer: SnsSigner
) -> None:
    message = json.loads(signer.notification(payload("ses/bounce_event.json")))
    message["SignatureVersion"] = "3"
    with pytest.raises(MalformedWebhook):
        await webhook.receive({}, json.dumps(message).encode())


async def test_a_mismatched_message_type_header_is_rejected(
    webhook: SesWebhook, signer: SnsSigner
) -> None:
    body = signer.notification(payload("ses/bounce_event.json"))
    with pytest.raises(MalformedWebhook):
        await webhook.receive({"X-Amz-Sns-Message-Type": "SubscriptionConfirmation"}, body)
    assert await webhook.receive({"x-amz-sns-message-type": "Notification"}, body)


def test_canonical_strings_agree() -> None:
    message = {
        "Type": "Notification",
        "MessageId": "m",
        "TopicArn": TOPIC,
        "Message": "line one\nline two",
        "Timestamp": "2024-01-01T00:00:00.000Z",
        "Subject": "s",
    }
    assert string_to_sign(message) == canonical(message)
    del message["Subject"]
    assert string_to_sign(message) == canonical(message)


# -- payloads → events --------------------------------------------------------------------


def test_bounce_notification_with_dsn() -> None:
    (event,) = ses_events(payload("ses/bounce_notification.json"), sns_message_id="sns-1")
    assert (event.type, event.subtype, event.recipient) == (
        EventType.BOUNCED,
        Subtype.HARD,
        "jane@example.com",
    )
    assert event.status == "5.1.1"
    assert event.diagnostic == "smtp; 550 5.1.1 <jane@example.com>... User"
    assert (
        event.provider_message_id == "00000138111222aa-33322211-cccc-cccc-cccc-ddddaaaa0680-000000"
    )
    assert event.message_id == "<c0ffee00000000000000000000005001@shop.example.com>"
    assert event.occurred_at == datetime(2016, 1, 27, 14, 59, 38, 237000, tzinfo=UTC)
    assert not event.sender_side


def test_bounce_notification_without_dsn_has_one_event_per_recipient() -> None:
    events = ses_events(payload("ses/bounce_notification_no_dsn.json"))
    assert [e.recipient for e in events] == ["jane@example.com", "richard@example.com"]
    assert all(e.subtype is Subtype.HARD and e.message_id is None for e in events)
    assert len({e.dedup_key for e in events}) == 2


def test_complaint_and_delivery_notifications() -> None:
    (complaint,) = ses_events(payload("ses/complaint_notification.json"))
    assert (complaint.type, complaint.recipient, complaint.feedback_type) == (
        EventType.COMPLAINED,
        "richard@example.com",
        "abuse",
    )
    (delivery,) = ses_events(payload("ses/delivery_notification.json"))
    assert (delivery.type, delivery.recipient) == (EventType.DELIVERED, "jane@example.com")
    assert delivery.diagnostic == "250 ok: Message 64111812 accepted"


def test_event_publishing_shape_carries_the_email_id_tag() -> None:
    (bounce,) = ses_events(payload("ses/bounce_event.json"))
    assert (bounce.type, bounce.subtype, bounce.email_id) == (EventType.BOUNCED, Subtype.HARD, 5002)
    assert bounce.message_id == "<c0ffee00000000000000000000005002@shop.example.com>"
    (complaint,) = ses_events(payload("ses/complaint_event.json"))
    assert (complaint.type, complaint.email_id) == (EventType.COMPLAINED, 5002)
    (delivery,) = ses_events(payload("ses/delivery_event.json"))
    assert delivery.type is EventType.DELIVERED
    (delay,) = ses_events(payload("ses/delivery_delay_event.json"))
    assert (delay.type, delay.status, delay.sender_side) == (EventType.DEFERRED, "4.4.1", False)
    assert ses_events(payload("ses/send_event.json")) == []


def test_sender_side_bounce() -> None:
    (event,) = ses_events(payload("ses/bounce_event_unauthenticated.json"))
    assert (event.subtype, event.status, event.sender_side) == (Subtype.HARD, "5.7.26", True)


def test_the_same_sns_delivery_twice_has_one_dedup_key() -> None:
    first = ses_events(payload("ses/bounce_event.json"), sns_message_id="a")
    retried = ses_events(payload("ses/bounce_event.json"), sns_message_id="a")
    assert first[0].dedup_key == retried[0].dedup_key


def test_config_section() -> None:
    built = webhook_from_config("ses", {"topics": [TOPIC]})
    assert isinstance(built, SesWebhook) and built.topics == {TOPIC}
    with pytest.raises(ConfigError, match="topics"):
        webhook_from_config("ses", {})
    with pytest.raises(ConfigError, match="topics"):
        webhook_from_config("ses", {"topics": ["arn:aws:s3:::bucket"]})
    with pytest.raises(ConfigError, match="unknown provider"):
        webhook_from_config("smoke-signals", {})
