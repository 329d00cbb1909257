"""sendgrid:// against a local server that answers as SendGrid documents.

Request and answer shapes from:
- https://www.twilio.com/docs/sendgrid/api-reference/mail-send/mail-send (POST /v3/mail/send,
  Bearer key, personalizations/from/reply_to/subject/content/attachments/headers/custom_args/
  categories; 202 Accepted with an empty body and `X-Message-Id`)
- https://www.twilio.com/docs/sendgrid/api-reference/mail-send/errors and
  https://www.twilio.com/docs/sendgrid/api-reference/how-to-use-the-sendgrid-v3-api/errors
  (`{"errors": [{"message", "field", "help"}]}`; 400, 401, 403, 413, 429, 5xx)
- https://www.twilio.com/docs/sendgrid/api-reference/how-to-use-the-sendgrid-v3-api/rate-limits
  (429 with X-RateLimit-Limit / -Remaining / -Reset, a Unix time)
"""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator

import pytest

from mailq.delivery.backends import sender_from_url
from mailq.delivery.esp.sendgrid import SendgridSender
from mailq.delivery.sender import SendReceipt
from mailq.errors import BackendError, BackendUnavailable, PermanentFailure, RetryLater
from tests.delivery.esp.fake import FakeProvider, reply, running
from tests.delivery.esp.messages import PNG, endpoint, full, message

KEY = "SG.test-key.secret"


@pytest.fixture
async def provider() -> AsyncIterator[FakeProvider]:
    async with running(reply(202, b"", {"X-Message-Id": "sg-abc"})) as fake:
        yield fake


@pytest.fixture
async def sender(provider: FakeProvider) -> AsyncIterator[SendgridSender]:
    built = sender_from_url(f"sendgrid://{KEY}@?endpoint={endpoint(provider.url)}")
    assert isinstance(built, SendgridSender)
    yield built
    await built.close()


async def test_one_email_maps_every_field(provider: FakeProvider, sender: SendgridSender) -> None:
    sent = full(7)
    receipt = await sender.send(sent)
    assert receipt.provider_message_id == "sg-abc"
    [seen] = provider.seen
    assert (seen.method, seen.path) == ("POST", "/v3/mail/send")
    assert seen.headers["authorization"] == f"Bearer {KEY}"
    body = seen.json
    assert body["personalizations"] == [
        {
            "to": [{"email": "ann7@example.com"}],
            "cc": [{"email": "cy@example.com"}],
            "bcc": [{"email": "bo@example.com"}],
        }
    ]
    assert body["from"] == {"email": "news@example.com"}
    assert body["reply_to"] == {"email": "help@example.com"}
    assert body["subject"] == "Hi Ann"
    plain, html = body["content"]
    assert plain["type"] == "text/plain" and plain["value"].startswith("Hello Ann.")
    assert html == {"type": "text/html", "value": '<p>Hello Ann <img src="cid:logo"></p>'}
    assert body["headers"] == {"X-Campaign": "spring", "Message-ID": sent.message_id}
    assert body["custom_args"] == {"mailq_email_id": "7", "mailq_message_id": sent.message_id}
    assert body["categories"] == ["welcome"]
    report, logo = body["attachments"]
    assert report["disposition"] == "attachment" and report["type"] == "application/pdf"
    assert base64.b64decode(report["content"]) == b"%PDF-1.4 report"
    assert logo["disposition"] == "inline" and logo["content_id"] == "logo"
    assert base64.b64decode(logo["content"]) == PNG


async def test_without_a_batch_call_a_batch_is_sent_concurrently(
    provider: FakeProvider, sender: SendgridSender
) -> None:
    assert sender.max_batch == 1
    results = await sender.send_batch([message(1), message(2)])
    assert len(provider.seen) == 2 and all(isinstance(r, SendReceipt) for r in results)


async def test_429_is_transient_until_the_reset_time(
    provider: FakeProvider, sender: SendgridSender
) -> None:
    reset = int(time.time()) + 30
    provider.answer(
        reply(
            429,
            {"errors": [{"field": None, "message": "too many requests"}]},
            {
                "X-RateLimit-Limit": "600",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": str(reset),
            },
        )
    )
    with pytest.raises(RetryLater) as caught:
        await sender.send(message())
    assert caught.value.retry_after_s is not None and 25 <= caught.value.retry_after_s <= 31


async def test_5xx_is_transient(provider: FakeProvider, sender: SendgridSender) -> None:
    provider.answer(reply(503, b"Service Unavailable"))
    with pytest.raises(RetryLater):
        await sender.send(message())


@pytest.mark.parametrize(
    ("status", "text"),
    [
        (401, "The provided authorization grant is invalid, expired, or revoked"),
        (
            403,
            "The from address does not match a verified Sender Identity. Mail cannot be sent "
            "until this error is resolved.",
        ),
    ],
)
async def test_401_403_are_the_backends_failure(
    provider: FakeProvider, sender: SendgridSender, status: int, text: str
) -> None:
    provider.answer(reply(status, {"errors": [{"field": None, "message": text, "help": None}]}))
    with pytest.raises(BackendUnavailable) as caught:
        await sender.send(message())
    assert caught.value.reason == f"sendgrid HTTP {status}: {text}"


async def test_a_per_message_error_is_permanent(
    provider: FakeProvider, sender: SendgridSender
) -> None:
    provider.answer(
        reply(
            400,
            {
                "errors": [
                    {
                        "message": "Does not contain a valid address.",
                        "field": "personalizations.0.to.0.email",
                        "help": "http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html",
                    }
                ]
            },
        )
    )
    with pytest.raises(PermanentFailure) as caught:
        await sender.send(message())
    assert caught.value.smtp_reply == (
        "Does not contain a valid address. (personalizations.0.to.0.email)"
    )


def test_region_eu_and_a_bad_option() -> None:
    sender = sender_from_url(f"sendgrid://{KEY}@?region=eu")
    assert isinstance(sender, SendgridSender) and sender.base_url == "https://api.eu.sendgrid.com"
    with pytest.raises(BackendError, match="unknown option 'regoin'") as caught:
        sender_from_url(f"sendgrid://{KEY}@?regoin=eu")
    assert KEY not in str(caught.value)
