"""Amazon SES events through Amazon SNS (`POST /v1/webhooks/ses`, raw message delivery off).

Verification, in this order, so that nothing is fetched for a request that fails a cheap check:
1. the body is an SNS message (`Type` SubscriptionConfirmation, Notification or
   UnsubscribeConfirmation) whose `TopicArn` is listed in `[webhooks.ses] topics`
   (any SNS topic carries a valid Amazon signature, so the signature alone proves nothing);
2. `SignatureVersion` is 1 (RSA with SHA1) or 2 (RSA with SHA256);
3. `SigningCertURL` is https and its host is `sns.<region>.amazonaws.com` or
   `sns.<region>.amazonaws.com.cn`, the region being the TopicArn's (a host like
   `s3.amazonaws.com` would let anyone serve a certificate: novuhq/novu#11056);
4. `Timestamp` is within `max_age_s` of now (SNS keeps the publish time on its retries, which
   last at most an hour);
5. the certificate (fetched over https, cached by URL, within its validity dates) verifies
   `Signature` over the canonical string of the documented fields.

Then a SubscriptionConfirmation's `SubscribeURL` (checked like the certificate URL) is fetched
to confirm the subscription, an UnsubscribeConfirmation is acknowledged and ignored, and a
Notification's `Message` (an SES notification, either shape: `notificationType` from identity
notifications or `eventType` from configuration-set event publishing) becomes events.

The host rule can be replaced (`host_rule=`) for tests that serve a certificate from loopback;
the config file cannot change it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import re
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from mailq.bounces.errors import (
    BadSignature,
    MalformedWebhook,
    TopicNotAllowed,
    UntrustedCertificateUrl,
    WebhookUnavailable,
)
from mailq.bounces.events import Event
from mailq.bounces.webhooks.common import (
    check_window,
    iso_time,
    lowered,
    mapping,
    now_seconds,
    section_seconds,
)
from mailq.bounces.webhooks.ses_events import PROVIDER, ses_events
from mailq.errors import ConfigError

logger = logging.getLogger(__name__)

MAX_AGE_S = 3600.0 + 300.0  # SNS retries for up to an hour, plus clock skew
FETCH_TIMEOUT_S = 10.0
MAX_CERTIFICATE_BYTES = 64 * 1024
CERTIFICATE_CACHE_SIZE = 32

HostRule = Callable[[str, str], bool]
"""(URL netloc, TopicArn region) → may a certificate or SubscribeURL be fetched from there."""

_ARN = re.compile(r"^arn:aws(-[a-z]+)*:sns:([a-z]{2}(-[a-z]+)+-\d+):\d{12}:[A-Za-z0-9_.-]{1,256}$")
_NOTIFICATION_FIELDS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
_CONFIRMATION_FIELDS = (
    "Message",
    "MessageId",
    "SubscribeURL",
    "Timestamp",
    "Token",
    "TopicArn",
    "Type",
)
_TYPES = {
    "Notification": _NOTIFICATION_FIELDS,
    "SubscriptionConfirmation": _CONFIRMATION_FIELDS,
    "UnsubscribeConfirmation": _CONFIRMATION_FIELDS,
}
_HEADER_FIELDS = (("x-amz-sns-topic-arn", "TopicArn"), ("x-amz-sns-message-type", "Type"))
_HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {"1": hashes.SHA1, "2": hashes.SHA256}


def region_of(topic_arn: str) -> str | None:
    """The region of an SNS topic ARN (`arn:aws:sns:us-east-1:123456789012:t` → `us-east-1`)."""
    match = _ARN.match(topic_arn)
    return match.group(2) if match else None


def sns_host_allowed(netloc: str, region: str) -> bool:
    """The default host rule: exactly `sns.<region>.amazonaws.com[.cn]`, default port."""
    host = netloc.lower()
    return host in {f"sns.{region}.amazonaws.com", f"sns.{region}.amazonaws.com.cn"}


def string_to_sign(message: Mapping[str, Any]) -> bytes:
    """The canonical string SNS signs: `name\\nvalue\\n` for the fields of the message's type,
    in their documented order (`Subject` only when the message has one)."""
    fields = _TYPES.get(str(message.get("Type")))
    if fields is None:
        raise MalformedWebhook("not an SNS message: unknown Type")
    parts: list[str] = []
    for name in fields:
        value = message.get(name)
        if name == "Subject" and value is None:
            continue
        if not isinstance(value, str):
            raise MalformedWebhook(f"the SNS message has no {name}")
        parts.append(f"{name}\n{value}\n")
    return "".join(parts).encode("utf-8")


class SesWebhook:
    """Verifies SNS deliveries of SES notifications and maps them to events."""

    provider = PROVIDER

    def __init__(
        self,
        topics: Collection[str],
        *,
        client: httpx.AsyncClient | None = None,
        host_rule: HostRule = sns_host_allowed,
        max_age_s: float = MAX_AGE_S,
        confirm_subscriptions: bool = True,
    ) -> None:
        if not topics:
            raise ConfigError("[webhooks.ses] topics: list at least one SNS topic ARN")
        for topic in topics:
            if region_of(topic) is None:
                raise ConfigError(f"[webhooks.ses] topics: {topic!r} is not an SNS topic ARN")
        self.topics = frozenset(topics)
        self._client = client
        self._owns_client = client is None
        self._host_rule = host_rule
        self._max_age_s = max_age_s
        self._confirm = confirm_subscriptions
        self._certificates: OrderedDict[str, x509.Certificate] = OrderedDict()
        self._fetch_lock = asyncio.Lock()

    @classmethod
    def from_section(
        cls, section: Mapping[str, object], *, client: httpx.AsyncClient | None = None
    ) -> SesWebhook:
        """From `[webhooks.ses]`: `topics` (required), `max_age_s`, `confirm_subscriptions`."""
        topics = section.get("topics")
        if not isinstance(topics, list) or not all(isinstance(t, str) for t in topics):
            raise ConfigError('[webhooks.ses] topics: a list of SNS topic ARNs ("arn:aws:sns:…")')
        confirm = section.get("confirm_subscriptions", True)
        if not isinstance(confirm, bool):
            raise ConfigError("[webhooks.ses] confirm_subscriptions: true or false")
        return cls(
            topics,
            client=client,
            max_age_s=section_seconds(section, PROVIDER, "max_age_s", MAX_AGE_S),
            confirm_subscriptions=confirm,
        )

    async def aclose(self) -> None:
        """Close the HTTP client if this webhook made it."""
        if self._owns_client and self._client is not None:
            await self._client.aclose()
            self._client = None

    async def receive(
        self, headers: Mapping[str, str], body: bytes, *, now: datetime | None = None
    ) -> tuple[Event, ...]:
        message = await self.verify(headers, body, now=now)
        kind = message["Type"]
        if kind == "SubscriptionConfirmation":
            if self._confirm:
                await self._confirm_subscription(message)
            return ()
        if kind == "UnsubscribeConfirmation":
            logger.info(
                "SNS unsubscribe confirmation ignored",
                extra={"action": "ses_unsubscribe_ignored", "topic": message["TopicArn"]},
            )
            return ()
        try:
            payload = json.loads(message["Message"])
        except ValueError:
            return ()
        return tuple(ses_events(mapping(payload), sns_message_id=message["MessageId"]))

    async def verify(
        self, headers: Mapping[str, str], body: bytes, *, now: datetime | None = None
    ) -> Mapping[str, Any]:
        """The SNS message of a request that passes every check (see the module docstring)."""
        try:
            message = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise MalformedWebhook("the body is not an SNS message (not JSON)") from None
        if not isinstance(message, dict) or message.get("Type") not in _TYPES:
            raise MalformedWebhook("the body is not an SNS message (no known Type)")
        topic = message.get("TopicArn")
        if not isinstance(topic, str) or topic not in self.topics:
            raise TopicNotAllowed(
                "the SNS topic is not listed in [webhooks.ses] topics"
                + (f": {topic}" if isinstance(topic, str) and region_of(topic) else "")
            )
        hdrs = lowered(headers)
        for name, field in (
            ("x-amz-sns-topic-arn", "TopicArn"),
            ("x-amz-sns-message-type", "Type"),
        ):
            if name in hdrs and hdrs[name] != message[field]:
                raise MalformedWebhook(f"the {name} header does not match the message's {field}")
        version = str(message.get("SignatureVersion"))
        if version not in _HASHES:
            raise MalformedWebhook("SignatureVersion must be 1 or 2")
        region = region_of(topic)
        if region is None:  # cannot happen: listed topics were validated in __init__
            raise TopicNotAllowed("the SNS topic ARN has no region")
        cert_url = message.get("SigningCertURL")
        if not isinstance(cert_url, str) or not self._trusted(cert_url, region, pem=True):
            raise UntrustedCertificateUrl(
                f"SigningCertURL is not https://sns.{region}.amazonaws.com/…pem"
            )
        signed_at = iso_time(message.get("Timestamp"))
        if signed_at is None:
            raise MalformedWebhook("the SNS message has no valid Timestamp")
        check_window(signed_at.timestamp(), now_seconds(now), self._max_age_s)
        canonical = string_to_sign(message)
        try:
            signature = base64.b64decode(str(message.get("Signature", "")), validate=True)
        except (binascii.Error, ValueError):
            raise BadSignature("the SNS Signature is not base64") from None
        certificate = await self._certificate(cert_url)
        moment = now or datetime.now(UTC)
        if not certificate.not_valid_before_utc <= moment <= certificate.not_valid_after_utc:
            raise BadSignature("the SNS signing certificate is outside its validity dates")
        key = certificate.public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            raise BadSignature("the SNS signing certificate does not hold an RSA key")
        try:
            key.verify(signature, canonical, padding.PKCS1v15(), _HASHES[version]())
        except InvalidSignature:
            raise BadSignature("the SNS signature does not match the message") from None
        return message

    def _trusted(self, url: str, region: str, *, pem: bool) -> bool:
        try:
            parts = urlsplit(url)
        except ValueError:
            return False
        if parts.scheme != "https" or parts.username or parts.password or not parts.netloc:
            return False
        if pem and not parts.path.endswith(".pem"):
            return False
        return self._host_rule(parts.netloc, region)

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=FETCH_TIMEOUT_S, follow_redirects=False)
        return self._client

    async def _certificate(self, url: str) -> x509.Certificate:
        cached = self._certificates.get(url)
        if cached is not None:
            self._certificates.move_to_end(url)
            return cached
        async with self._fetch_lock:
            cached = self._certificates.get(url)
            if cached is not None:
                return cached
            try:
                response = await self._http().get(url)
            except httpx.HTTPError as exc:
                raise WebhookUnavailable(
                    f"cannot fetch the SNS signing certificate ({type(exc).__name__})"
                ) from None
            if response.status_code != 200 or len(response.content) > MAX_CERTIFICATE_BYTES:
                raise WebhookUnavailable(
                    f"the SNS signing certificate URL answered {response.status_code}"
                )
            try:
                certificate = x509.load_pem_x509_certificate(response.content)
            except ValueError:
                raise WebhookUnavailable("the SNS signing certificate is not PEM") from None
            self._certificates[url] = certificate
            while len(self._certificates) > CERTIFICATE_CACHE_SIZE:
                self._certificates.popitem(last=False)
            return certificate

    async def _confirm_subscription(self, message: Mapping[str, Any]) -> None:
        topic = message["TopicArn"]
        region = region_of(topic)
        url = message.get("SubscribeURL")
        if region is None or not isinstance(url, str) or not self._trusted(url, region, pem=False):
            raise UntrustedCertificateUrl(
                f"SubscribeURL is not https://sns.{region}.amazonaws.com/"
            )
        try:
            response = await self._http().get(url)
        except httpx.HTTPError as exc:
            raise WebhookUnavailable(
                f"cannot confirm the SNS subscription ({type(exc).__name__})"
            ) from None
        if response.status_code != 200:
            raise WebhookUnavailable(f"the SNS SubscribeURL answered {response.status_code}")
        logger.info(
            "SNS subscription confirmed",
            extra={"action": "ses_subscription_confirmed", "topic": topic},
        )


__all__ = ["SesWebhook", "region_of", "ses_events", "sns_host_allowed", "string_to_sign"]
