"""mailgun:// against a local server that answers as Mailgun documents.

Request and answer shapes from:
- https://documentation.mailgun.com/docs/mailgun/api-reference/send/mailgun/messages/post-v3--domain-name--messages-mime
  (POST /v3/{domain}/messages.mime, HTTP basic `api:KEY`, multipart/form-data `to` and the
  `message` file, `o:tag`, `v:` variables; 200 `{"id": "<...>", "message": "Queued. Thank you."}`)
- https://documentation.mailgun.com/docs/mailgun/quickstart-guide/responses (400 with a
  "message", 401/403, 404, 429, 500)
- https://documentation.mailgun.com/en/latest/api-sending.html (EU: api.eu.mailgun.net)
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import pytest

from mailq.delivery.backends import sender_from_url
from mailq.delivery.esp.mailgun import MailgunSender
from mailq.errors import BackendUnavailable, PermanentFailure, RetryLater
from tests.delivery.esp.fake import FakeProvider, reply, running
from tests.delivery.esp.messages import endpoint, full, message

KEY = "key-3ax6xnjp29jd6fds4gc373sgvjxteol0"
DOMAIN = "mg.example.com"
QUEUED = {"id": "<20261201100000.1.ABCDEF@mg.example.com>", "message": "Queued. Thank you."}


@pytest.fixture
async def provider() -> AsyncIterator[FakeProvider]:
    async with running(reply(200, QUEUED)) as fake:
        yield fake


@pytest.fixture
async def sender(provider: FakeProvider) -> AsyncIterator[MailgunSender]:
    built = sender_from_url(f"mailgun://{KEY}@{DOMAIN}?endpoint={endpoint(provider.url)}")
    assert isinstance(built, MailgunSender)
    yield built
    await built.close()


async def test_the_raw_mime_goes_with_the_envelope(
    provider: FakeProvider, sender: MailgunSender
) -> None:
    sent = full(7)
    receipt = await sender.send(sent)
    assert receipt.provider_message_id == "20261201100000.1.ABCDEF@mg.example.com"
    assert receipt.smtp_reply is not None and "Queued. Thank you." in receipt.smtp_reply
    [seen] = provider.seen
    assert (seen.method, seen.path) == ("POST", f"/v3/{DOMAIN}/messages.mime")
    assert (
        seen.headers["authorization"] == "Basic " + base64.b64encode(f"api:{KEY}".encode()).decode()
    )
    assert seen.headers["content-type"].startswith("multipart/form-data")
    fields, files = seen.form()
    assert fields["to"] == ["ann7@example.com", "cy@example.com", "bo@example.com"]
    assert fields["o:tag"] == ["welcome"]
    assert fields["v:mailq_email_id"] == ["7"]
    assert fields["v:mailq_message_id"] == [sent.message_id]
    _, _, data = files["message"]
    assert data == sent.data, "the exact MIME mailq built"


def test_region_eu() -> None:
    sender = sender_from_url(f"mailgun://{KEY}@{DOMAIN}?region=eu")
    assert isinstance(sender, MailgunSender) and sender.base_url == "https://api.eu.mailgun.net"


def test_endpoint_wins_over_region() -> None:
    sender = sender_from_url(
        f"mailgun://{KEY}@{DOMAIN}?region=eu&endpoint={endpoint('https://proxy.example/mg/')}"
    )
    assert isinstance(sender, MailgunSender) and sender.base_url == "https://proxy.example/mg"


async def test_429_is_transient_with_the_wait_asked_for(
    provider: FakeProvider, sender: MailgunSender
) -> None:
    provider.answer(reply(429, {"message": "Too many requests"}, {"Retry-After": "12"}))
    with pytest.raises(RetryLater) as caught:
        await sender.send(message())
    assert caught.value.retry_after_s == 12.0


async def test_5xx_is_transient(provider: FakeProvider, sender: MailgunSender) -> None:
    provider.answer(reply(500, {"message": "Internal error"}))
    with pytest.raises(RetryLater):
        await sender.send(message())


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (401, b"Forbidden"),
        (403, {"message": "Domain mg.example.com is disabled"}),
        (404, {"message": "Domain not found: mg.example.com"}),
    ],
)
async def test_auth_and_domain_errors_are_the_backends_failure(
    provider: FakeProvider, sender: MailgunSender, status: int, body: object
) -> None:
    provider.answer(reply(status, body))
    with pytest.raises(BackendUnavailable) as caught:
        await sender.send(message())
    assert f"mailgun HTTP {status}" in caught.value.reason and KEY not in caught.value.reason


async def test_a_per_message_error_is_permanent(
    provider: FakeProvider, sender: MailgunSender
) -> None:
    text = "to parameter is not a valid address. please check documentation"
    provider.answer(reply(400, {"message": text}))
    with pytest.raises(PermanentFailure) as caught:
        await sender.send(message())
    assert caught.value.reason == f"mailgun HTTP 400: {text}"


async def test_the_file_part_is_a_message(provider: FakeProvider, sender: MailgunSender) -> None:
    await sender.send(message())
    _, files = provider.seen[0].form()
    assert files["message"][:2] == ("message.eml", "message/rfc822")
