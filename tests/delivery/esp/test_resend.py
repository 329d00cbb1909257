"""resend:// against a local server that answers as Resend documents.

Request and answer shapes from:
- https://resend.com/docs/api-reference/emails/send-email (POST /emails, Bearer key, fields,
  `{"id": ...}`)
- https://resend.com/docs/api-reference/emails/send-batch-emails (POST /emails/batch, ≤ 100,
  no attachments, `{"data": [{"id": ...}]}`)
- https://resend.com/docs/dashboard/emails/batch-validation-modes (`x-batch-validation:
  permissive`: `errors: [{"index", "message"}]` beside `data`)
- https://resend.com/docs/dashboard/emails/idempotency-keys (`Idempotency-Key`, 24 h; same key
  and body: the first answer again)
- https://resend.com/docs/api-reference/errors (`{"statusCode", "message", "name"}`; the types)
"""

from __future__ import annotations

import base64
import itertools
from collections.abc import AsyncIterator

import pytest
from starlette.responses import JSONResponse, Response

from mailq.delivery.backends import sender_from_url
from mailq.delivery.esp.resend import ResendSender, idempotency_key
from mailq.delivery.sender import SendReceipt
from mailq.errors import BackendUnavailable, PermanentFailure, RetryLater
from mailq.models import Attachment
from tests.delivery.esp.fake import FakeProvider, Seen, reply, running
from tests.delivery.esp.messages import PNG, endpoint, full, message

KEY = "re_test_key_123"


def accepted() -> object:
    ids = itertools.count(1)

    def answer(seen: Seen) -> Response:
        body = seen.json
        if isinstance(body, list):
            return JSONResponse({"data": [{"id": f"rs-{next(ids)}"} for _ in body]})
        return JSONResponse({"id": f"rs-{next(ids)}"})

    return answer


def error(status: int, name: str, text: str, headers: dict[str, str] | None = None) -> object:
    return reply(status, {"statusCode": status, "message": text, "name": name}, headers)


@pytest.fixture
async def provider() -> AsyncIterator[FakeProvider]:
    async with running(accepted()) as fake:  # type: ignore[arg-type]
        yield fake


@pytest.fixture
async def sender(provider: FakeProvider) -> AsyncIterator[ResendSender]:
    built = sender_from_url(f"resend://{KEY}@?endpoint={endpoint(provider.url)}")
    assert isinstance(built, ResendSender)
    yield built
    await built.close()


async def test_one_email_maps_every_field(provider: FakeProvider, sender: ResendSender) -> None:
    sent = full(7)
    receipt = await sender.send(sent)
    assert receipt.provider_message_id == "rs-1"
    [seen] = provider.seen
    assert (seen.method, seen.path) == ("POST", "/emails")
    assert seen.headers["authorization"] == f"Bearer {KEY}"
    assert seen.headers["idempotency-key"] == idempotency_key([sent.message_id])
    body = seen.json
    assert body["from"] == "news@example.com" and body["to"] == ["ann7@example.com"]
    assert body["cc"] == ["cy@example.com"] and body["bcc"] == ["bo@example.com"]
    assert body["reply_to"] == ["help@example.com"]
    assert body["subject"] == "Hi Ann" and body["text"].startswith("Hello Ann.")
    assert body["html"] == '<p>Hello Ann <img src="cid:logo"></p>'
    assert body["headers"] == {"X-Campaign": "spring", "Message-ID": sent.message_id}
    assert {"name": "mailq_email_id", "value": "7"} in body["tags"]
    assert {"name": "mailq_kind", "value": "welcome"} in body["tags"]
    report, logo = body["attachments"]
    assert report["filename"] == "report.pdf" and "content_id" not in report
    assert base64.b64decode(report["content"]) == b"%PDF-1.4 report"
    assert logo["content_id"] == "logo" and base64.b64decode(logo["content"]) == PNG


async def test_the_idempotency_key_follows_the_message_id(
    provider: FakeProvider, sender: ResendSender
) -> None:
    first, other = message(1), message(2)
    provider.answer(error(500, "internal_server_error", "oops"))
    with pytest.raises(RetryLater):
        await sender.send(first)
    await sender.send(first)  # the retry
    await sender.send(other)
    keys = [seen.headers["idempotency-key"] for seen in provider.seen]
    assert keys[0] == keys[1] != keys[2]
    assert provider.seen[0].body == provider.seen[1].body, "the same key carries the same body"
    assert len(keys[0]) <= 256


async def test_a_batch_is_one_call_and_the_same_batch_carries_the_same_key(
    provider: FakeProvider, sender: ResendSender
) -> None:
    assert sender.max_batch == 100
    batch = [message(n) for n in (1, 2, 3)]
    results = await sender.send_batch(batch)
    # The same three emails claimed again after a crash, in another order.
    again = await sender.send_batch([batch[2], batch[0], batch[1]])
    first, second = provider.seen
    assert (first.method, first.path) == ("POST", "/emails/batch")
    assert first.headers["authorization"] == f"Bearer {KEY}"
    assert first.headers["x-batch-validation"] == "permissive"
    assert first.headers["idempotency-key"] == second.headers["idempotency-key"]
    assert first.headers["idempotency-key"] == idempotency_key(sorted(m.message_id for m in batch))
    assert first.body == second.body
    sent_order = [item["to"][0] for item in first.json]
    by_to = {m.to: m for m in batch}
    ordered = sorted(batch, key=lambda m: m.message_id)
    assert sent_order == [m.to for m in ordered]
    # Each result is the id Resend gave that email, in the caller's order.
    ids = {m.to: f"rs-{n}" for n, m in enumerate(ordered, start=1)}
    assert [r.provider_message_id for r in results] == [ids[m.to] for m in batch]  # type: ignore[union-attr]
    assert len(again) == 3 and set(by_to) == set(sent_order)


async def test_per_message_errors_of_a_permissive_batch(
    provider: FakeProvider, sender: ResendSender
) -> None:
    batch = sorted((message(n) for n in (1, 2, 3)), key=lambda m: m.message_id)
    provider.answer(
        reply(
            200,
            {
                "data": [{"id": "rs-a"}, {"id": "rs-c"}],
                "errors": [{"index": 1, "message": "The `to` field is invalid."}],
            },
        )
    )
    ok, refused, also = await sender.send_batch(batch)
    assert isinstance(ok, SendReceipt) and ok.provider_message_id == "rs-a"
    assert isinstance(refused, PermanentFailure)
    assert refused.smtp_reply == "The `to` field is invalid."
    assert isinstance(also, SendReceipt) and also.provider_message_id == "rs-c"


async def test_a_message_with_attachments_goes_alone(
    provider: FakeProvider, sender: ResendSender
) -> None:
    plain = [message(1), message(2)]
    attached = message(3, attachments=[Attachment("a.txt", "text/plain", b"a")])
    results = await sender.send_batch([plain[0], attached, plain[1]])
    assert sorted(seen.path for seen in provider.seen) == ["/emails", "/emails/batch"]
    [single] = [s for s in provider.seen if s.path == "/emails"]
    assert single.json["to"] == [attached.to]
    assert single.headers["idempotency-key"] == idempotency_key([attached.message_id])
    assert all(isinstance(r, SendReceipt) for r in results)


async def test_429_is_transient_with_the_wait_asked_for(
    provider: FakeProvider, sender: ResendSender
) -> None:
    provider.answer(
        error(
            429,
            "rate_limit_exceeded",
            "Too many requests. You can only make 2 requests per second.",
            {"ratelimit-limit": "2", "ratelimit-remaining": "0", "ratelimit-reset": "1"},
        ),
        error(
            429,
            "daily_quota_exceeded",
            "You have reached your daily quota.",
            {"retry-after": "3600"},
        ),
    )
    with pytest.raises(RetryLater) as caught:
        await sender.send(message())
    assert caught.value.retry_after_s == 1.0
    with pytest.raises(RetryLater) as caught:
        await sender.send(message())
    assert caught.value.retry_after_s == 3600.0


async def test_5xx_is_transient(provider: FakeProvider, sender: ResendSender) -> None:
    provider.answer(error(500, "application_error", "An unexpected error occurred."))
    results = await sender.send_batch([message(1), message(2)])
    assert all(isinstance(r, RetryLater) for r in results)


@pytest.mark.parametrize(
    ("status", "name", "text"),
    [
        (401, "missing_api_key", "Missing API key in the authorization header."),
        (403, "invalid_api_key", "API key is invalid."),
        (403, "validation_error", "The example.com domain is not verified."),
    ],
)
async def test_401_403_are_the_backends_failure(
    provider: FakeProvider, sender: ResendSender, status: int, name: str, text: str
) -> None:
    provider.answer(error(status, name, text))
    with pytest.raises(BackendUnavailable) as caught:
        await sender.send(message())
    assert caught.value.reason == f"resend HTTP {status} {name}: {text}"
    assert KEY not in caught.value.reason


async def test_a_per_message_error_is_permanent(
    provider: FakeProvider, sender: ResendSender
) -> None:
    text = "Invalid `from` field. The email address needs to follow the `email@example.com` format."
    provider.answer(error(422, "invalid_from_address", text))
    with pytest.raises(PermanentFailure) as caught:
        await sender.send(message())
    assert caught.value.smtp_reply == text
