"""ses:// against moto's SES v2 in server mode (a real process, SigV4 checked), and against a
local server answering with the errors moto does not emulate.

Request and answer shapes from:
- https://docs.aws.amazon.com/ses/latest/APIReference-V2/API_SendEmail.html (POST
  /v2/email/outbound-emails; FromEmailAddress, Destination, Content.Raw.Data base64,
  EmailTags; `{"MessageId": ...}`; its errors)
- https://docs.aws.amazon.com/ses/latest/APIReference-V2/CommonErrors.html
- https://docs.aws.amazon.com/ses/latest/APIReference-V2/CommonParameters.html (SigV4)
- https://docs.aws.amazon.com/ses/latest/dg/send-email-raw.html (SES rewrites Message-ID, Date)
REST-JSON errors carry `x-amzn-ErrorType` and `{"message": ...}`.
"""

from __future__ import annotations

import base64
import email
import re
import subprocess
from collections.abc import AsyncIterator, Iterator
from email import policy
from pathlib import Path

import pytest

from mailq.compose.dkim import DkimSigner
from mailq.config import DkimKey
from mailq.delivery.backends import sender_from_url
from mailq.delivery.esp.ses import SesSender
from mailq.delivery.sender import SendReceipt
from mailq.errors import BackendError, BackendUnavailable, PermanentFailure, RetryLater
from mailq.models import Attachment
from tests.delivery.esp.fake import FakeProvider, reply, running
from tests.delivery.esp.messages import endpoint, full, message
from tests.delivery.esp.moto import REGION, Moto, moto_server


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Moto]:
    with moto_server(tmp_path_factory.mktemp("moto") / "moto.log") as server:
        yield server


def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, key_id: str, secret: str) -> None:
    """Credentials the usual way botocore finds them, and nothing else from this machine."""
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    if key_id:
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", key_id)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    else:
        monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
        monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)


@pytest.fixture
async def ses(
    moto: Moto, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> AsyncIterator[SesSender]:
    aws_env(monkeypatch, tmp_path, moto.access_key_id, moto.secret_access_key)
    sender = sender_from_url(f"ses://{REGION}?endpoint={endpoint(moto.url)}")
    assert isinstance(sender, SesSender)
    yield sender
    await sender.close()


async def test_moto_receives_the_exact_raw_mime(moto: Moto, ses: SesSender) -> None:
    sent = full(7)
    receipt = await ses.send(sent)
    assert receipt.provider_message_id
    stored = moto.raw_messages()[receipt.provider_message_id]
    assert str(stored["raw_data"]).encode("utf-8") == sent.data
    assert stored["source"] == "news@example.com"
    for address in ("ann7@example.com", "cy@example.com", "bo@example.com"):
        assert address in stored["destinations"]  # type: ignore[operator]


async def test_a_batch_without_a_batch_call(moto: Moto, ses: SesSender) -> None:
    assert ses.max_batch == 1
    batch = [message(n, attachments=[Attachment("a.txt", "text/plain", b"a")]) for n in (1, 2)]
    results = await ses.send_batch(batch)
    stored = moto.raw_messages()
    for sent, result in zip(batch, results, strict=True):
        assert isinstance(result, SendReceipt) and result.provider_message_id
        assert str(stored[result.provider_message_id]["raw_data"]).encode() == sent.data


async def test_an_unverified_sender_is_refused_for_that_email(ses: SesSender) -> None:
    with pytest.raises(PermanentFailure) as caught:
        await ses.send(message(from_address="someone@unverified.example"))
    assert caught.value.reason.startswith("ses HTTP 400 MessageRejected: ")


async def test_a_wrong_secret_is_the_backends_failure(
    moto: Moto, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    aws_env(monkeypatch, tmp_path, moto.access_key_id, "not-the-secret")
    sender = sender_from_url(f"ses://{REGION}?endpoint={endpoint(moto.url)}")
    try:
        with pytest.raises(BackendUnavailable) as caught:
            await sender.send(message())
    finally:
        await sender.close()
    assert "SignatureDoesNotMatch" in caught.value.reason
    assert "not-the-secret" not in caught.value.reason


async def test_no_credentials_is_the_backends_failure(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    aws_env(monkeypatch, tmp_path, "", "")
    async with running(reply(200, {"MessageId": "x"})) as fake:
        sender = sender_from_url(f"ses://{REGION}?endpoint={endpoint(fake.url)}")
        try:
            with pytest.raises(BackendUnavailable, match="no AWS credentials"):
                await sender.send(message())
        finally:
            await sender.close()
        assert fake.seen == []


def ses_error(status: int, kind: str, text: str, headers: dict[str, str] | None = None) -> object:
    return reply(status, {"message": text}, {"x-amzn-ErrorType": f"{kind}:", **(headers or {})})


@pytest.fixture
async def fake_ses(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> AsyncIterator[tuple[FakeProvider, SesSender]]:
    aws_env(monkeypatch, tmp_path, "AKIDEXAMPLE", "secret")
    async with running(reply(200, {"MessageId": "ses-1"})) as fake:
        sender = sender_from_url(
            f"ses://{REGION}?endpoint={endpoint(fake.url)}&configuration_set=transactional"
        )
        assert isinstance(sender, SesSender)
        try:
            yield fake, sender
        finally:
            await sender.close()


async def test_the_request_is_signed_and_shaped_as_documented(
    fake_ses: tuple[FakeProvider, SesSender],
) -> None:
    fake, sender = fake_ses
    sent = full(7)
    assert (await sender.send(sent)).provider_message_id == "ses-1"
    [seen] = fake.seen
    assert (seen.method, seen.path) == ("POST", "/v2/email/outbound-emails")
    authorization = seen.headers["authorization"]
    assert authorization.startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    assert f"/{REGION}/ses/aws4_request" in authorization
    assert "SignedHeaders=" in authorization and "host" in authorization
    assert "x-amz-date" in seen.headers and "secret" not in authorization
    body = seen.json
    assert base64.b64decode(body["Content"]["Raw"]["Data"]) == sent.data
    assert body["FromEmailAddress"] == "news@example.com"
    assert body["Destination"] == {
        "ToAddresses": ["ann7@example.com"],
        "CcAddresses": ["cy@example.com"],
        "BccAddresses": ["bo@example.com"],
    }
    assert {"Name": "mailq_email_id", "Value": "7"} in body["EmailTags"]
    assert body["ConfigurationSetName"] == "transactional"


@pytest.mark.parametrize(
    ("kind", "text"),
    [
        ("SendingPausedException", "Sending is paused for this account."),
        ("AccountSuspendedException", "Your account has been suspended."),
        ("MailFromDomainNotVerifiedException", "The MAIL FROM domain is not verified."),
    ],
)
async def test_account_level_errors_are_the_backends_failure(
    fake_ses: tuple[FakeProvider, SesSender], kind: str, text: str
) -> None:
    fake, sender = fake_ses
    fake.answer(ses_error(400, kind, text))
    with pytest.raises(BackendUnavailable) as caught:
        await sender.send(message())
    assert caught.value.reason == f"ses HTTP 400 {kind}: {text}"


async def test_403_is_the_backends_failure(fake_ses: tuple[FakeProvider, SesSender]) -> None:
    fake, sender = fake_ses
    fake.answer(ses_error(403, "AccessDeniedException", "not authorized to perform ses:SendEmail"))
    with pytest.raises(BackendUnavailable):
        await sender.send(message())


async def test_429_and_5xx_are_transient(fake_ses: tuple[FakeProvider, SesSender]) -> None:
    fake, sender = fake_ses
    fake.answer(
        ses_error(
            429, "TooManyRequestsException", "Maximum sending rate exceeded.", {"Retry-After": "2"}
        ),
        ses_error(500, "InternalFailure", "An internal error occurred."),
    )
    with pytest.raises(RetryLater) as caught:
        await sender.send(message())
    assert caught.value.retry_after_s == 2.0
    with pytest.raises(RetryLater) as caught:
        await sender.send(message())
    assert not isinstance(caught.value, BackendUnavailable)


async def test_a_rejected_message_is_permanent(fake_ses: tuple[FakeProvider, SesSender]) -> None:
    fake, sender = fake_ses
    fake.answer(ses_error(400, "MessageRejected", "Email address is not verified."))
    with pytest.raises(PermanentFailure) as caught:
        await sender.send(message())
    assert caught.value.smtp_reply == "Email address is not verified."


def signed_header_names(data: bytes) -> set[str]:
    """The h= tag of the DKIM-Signature in front of a message."""
    signature = email.message_from_bytes(data, policy=policy.default)["DKIM-Signature"]
    found = re.search(r"\bh=([^;]+)", re.sub(r"\s+", "", str(signature)))
    assert found, "the signature names its headers"
    return {name.lower() for name in found.group(1).split(":")}


def test_the_dkim_signature_leaves_out_what_ses_rewrites(tmp_path: Path) -> None:
    private = tmp_path / "private.pem"
    subprocess.run(["openssl", "genrsa", "-out", private, "2048"], check=True, capture_output=True)
    key = DkimKey("example.com", "mail", private.read_bytes())
    assert SesSender.unsigned_headers == {"message-id", "date"}
    for_ses = DkimSigner(key, unsigned_headers=SesSender.unsigned_headers).sign(message())
    names = signed_header_names(for_ses.data)
    assert {"from", "to", "subject"} <= names and not names & {"message-id", "date"}
    assert {"message-id", "date"} <= signed_header_names(DkimSigner(key).sign(message()).data)


def test_urls_are_checked_without_echoing_secrets() -> None:
    with pytest.raises(BackendError, match="name the AWS region"):
        sender_from_url("ses://")
    with pytest.raises(BackendError, match="credentials do not go in the URL"):
        sender_from_url("ses://AKIA:secret@us-east-1")
    with pytest.raises(BackendError, match="endpoint= must be an http"):
        sender_from_url("ses://us-east-1?endpoint=ftp%3A%2F%2Fx")
