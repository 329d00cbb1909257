"""postmark:// against a local server that answers as Postmark documents.

Request and answer shapes from:
- https://postmarkapp.com/developer/api/email-api (POST /email, POST /email/batch, fields)
- https://postmarkapp.com/developer/user-guide/send-email-with-api/batch-emails (≤ 500 a call,
  200 with one result per message, in order)
- https://postmarkapp.com/developer/api/overview (X-Postmark-Server-Token; 401, 422 with
  ErrorCode, 429, 500, 503; the API error codes table)
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import pytest

from mailq.delivery.backends import sender_from_url
from mailq.delivery.esp.postmark import PostmarkSender
from mailq.delivery.sender import SendReceipt
from mailq.errors import BackendUnavailable, PermanentFailure, RetryLater
from tests.delivery.esp.fake import FakeProvider, Seen, reply, running
from tests.delivery.esp.messages import PNG, endpoint, full, message

TOKEN = "server-token-1234"


def accepted(seen: Seen) -> object:
    from starlette.responses import JSONResponse

    def result(item: dict[str, object], n: int) -> dict[str, object]:
        return {
            "To": item["To"],
            "SubmittedAt": "2026-12-01T10:00:00.0000000Z",
            "MessageID": f"pm-{n}",
            "ErrorCode": 0,
            "Message": "OK",
        }

    body = seen.json
    if isinstance(body, list):
        return JSONResponse([result(item, n) for n, item in enumerate(body)])
    return JSONResponse(result(body, 0))


@pytest.fixture
async def provider() -> AsyncIterator[FakeProvider]:
    async with running(accepted) as fake:  # type: ignore[arg-type]
        yield fake


@pytest.fixture
async def sender(provider: FakeProvider) -> AsyncIterator[PostmarkSender]:
    built = sender_from_url(
        f"postmark://{TOKEN}@?endpoint={endpoint(provider.url)}&message_stream=outbound"
    )
    assert isinstance(built, PostmarkSender)
    yield built
    await built.close()


async def test_one_email_maps_every_field(provider: FakeProvider, sender: PostmarkSender) -> None:
    sent = full(7)
    receipt = await sender.send(sent)
    assert receipt.provider_message_id == "pm-0"
    [seen] = provider.seen
    assert (seen.method, seen.path) == ("POST", "/email")
    assert seen.headers["x-postmark-server-token"] == TOKEN
    assert seen.headers["accept"] == "application/json"
    assert seen.headers["content-type"] == "application/json"
    body = seen.json
    assert body["From"] == "news@example.com"
    assert body["To"] == "ann7@example.com"
    assert body["Cc"] == "cy@example.com" and body["Bcc"] == "bo@example.com"
    assert body["ReplyTo"] == "help@example.com"
    assert body["Subject"] == "Hi Ann"
    assert body["TextBody"].startswith("Hello Ann.")
    assert body["HtmlBody"] == '<p>Hello Ann <img src="cid:logo"></p>'
    assert {"Name": "X-Campaign", "Value": "spring"} in body["Headers"]
    assert {"Name": "Message-ID", "Value": sent.message_id} in body["Headers"]
    assert body["Tag"] == "welcome"
    assert body["Metadata"] == {"mailq_email_id": "7", "mailq_message_id": sent.message_id}
    assert body["MessageStream"] == "outbound"
    report, logo = body["Attachments"]
    assert report["Name"] == "report.pdf" and report["ContentType"] == "application/pdf"
    assert base64.b64decode(report["Content"]) == b"%PDF-1.4 report" and "ContentID" not in report
    assert logo["ContentID"] == "cid:logo" and base64.b64decode(logo["Content"]) == PNG


async def test_a_batch_is_one_call_with_a_result_per_message(
    provider: FakeProvider, sender: PostmarkSender
) -> None:
    from starlette.responses import JSONResponse

    messages = [message(n) for n in (1, 2, 3)]
    provider.answer(
        lambda seen: JSONResponse(
            [
                {"To": "ann1@example.com", "MessageID": "pm-a", "ErrorCode": 0, "Message": "OK"},
                {
                    "ErrorCode": 406,
                    "Message": "You tried to send to recipient(s) that have been marked as "
                    "inactive. Found inactive addresses: ann2@example.com.",
                },
                {"ErrorCode": 300, "Message": "Invalid 'To' address: 'ann3@example.com'."},
            ]
        )
    )
    calls: list[int] = []

    async def before_data() -> None:
        calls.append(len(provider.seen))

    ok, inactive, invalid = await sender.send_batch(messages, before_data)
    assert calls == [0], "before_data runs once, before the request"
    [seen] = provider.seen
    assert (seen.method, seen.path) == ("POST", "/email/batch")
    assert [item["To"] for item in seen.json] == [m.to for m in messages]
    assert isinstance(ok, SendReceipt) and ok.provider_message_id == "pm-a"
    assert isinstance(inactive, PermanentFailure) and inactive.suppress
    assert "406" in inactive.reason and "inactive" in inactive.reason
    assert isinstance(invalid, PermanentFailure) and not invalid.suppress
    assert invalid.smtp_reply == "Invalid 'To' address: 'ann3@example.com'."


async def test_more_than_500_go_in_calls_of_500(
    provider: FakeProvider, sender: PostmarkSender
) -> None:
    assert sender.max_batch == 500
    results = await sender.send_batch([message(n) for n in range(1, 502)])
    assert sorted(len(seen.json) for seen in provider.seen) == [1, 500]
    assert all(isinstance(r, SendReceipt) for r in results) and len(results) == 501


async def test_429_is_transient_with_the_wait_asked_for(
    provider: FakeProvider, sender: PostmarkSender
) -> None:
    provider.answer(reply(429, {"ErrorCode": 429, "Message": "Rate limit"}, {"Retry-After": "7"}))
    with pytest.raises(RetryLater) as caught:
        await sender.send(message())
    assert caught.value.retry_after_s == 7.0 and not isinstance(caught.value, BackendUnavailable)


@pytest.mark.parametrize("status", [500, 503])
async def test_5xx_is_transient(
    provider: FakeProvider, sender: PostmarkSender, status: int
) -> None:
    provider.answer(reply(status, b"upstream trouble"))
    with pytest.raises(RetryLater) as caught:
        await sender.send(message())
    assert f"HTTP {status}" in caught.value.reason


async def test_401_is_the_backends_failure(provider: FakeProvider, sender: PostmarkSender) -> None:
    provider.answer(reply(401, {"ErrorCode": 10, "Message": "Bad or missing API token"}))
    with pytest.raises(BackendUnavailable) as caught:
        await sender.send(message())
    assert "Bad or missing API token" in caught.value.reason
    assert TOKEN not in caught.value.reason


@pytest.mark.parametrize("code", [405, 412, 413])
async def test_account_error_codes_are_the_backends_failure(
    provider: FakeProvider, sender: PostmarkSender, code: int
) -> None:
    provider.answer(reply(422, {"ErrorCode": code, "Message": "Account may not send"}))
    with pytest.raises(BackendUnavailable):
        await sender.send(message())


async def test_a_per_message_error_is_permanent_with_the_providers_message(
    provider: FakeProvider, sender: PostmarkSender
) -> None:
    provider.answer(reply(422, {"ErrorCode": 300, "Message": "Invalid email request"}))
    with pytest.raises(PermanentFailure) as caught:
        await sender.send(message())
    assert caught.value.reason == "postmark HTTP 422 300: Invalid email request"
    assert not caught.value.suppress


async def test_a_refused_batch_fails_each_of_its_messages(
    provider: FakeProvider, sender: PostmarkSender
) -> None:
    provider.answer(reply(401, {"ErrorCode": 10, "Message": "Bad or missing API token"}))
    results = await sender.send_batch([message(1), message(2)])
    assert len(results) == 2 and all(isinstance(r, BackendUnavailable) for r in results)


async def test_nothing_listening_is_the_backends_failure() -> None:
    async with running(reply(200)) as gone:
        url = gone.url
    sender = sender_from_url(f"postmark://{TOKEN}@?endpoint={endpoint(url)}")
    try:
        with pytest.raises(BackendUnavailable, match="cannot connect"):
            await sender.send(message())
    finally:
        await sender.close()
