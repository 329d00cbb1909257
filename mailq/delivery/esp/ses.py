"""Amazon SES v2 `SendEmail` with the raw MIME mailq builds (`ses://REGION`).

The request is signed by botocore's SigV4 signer with the credentials botocore finds the usual
way (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN, AWS_PROFILE and the shared
config and credentials files, container and instance roles) and sent with httpx. SES rewrites
Message-ID and Date, so a DKIM signature made by mailq must not cover them
(`unsigned_headers`); later events name the email by the SES MessageId on the receipt.

API: https://docs.aws.amazon.com/ses/latest/APIReference-V2/API_SendEmail.html
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from typing import Any

import httpx
import orjson
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import RefreshableCredentials
from botocore.session import get_session

from mailq.compose.message import OutgoingMessage
from mailq.delivery.esp.client import HttpSender, b64, json_of, receipt
from mailq.delivery.esp.outcomes import Documented, Verdict, answer_failure
from mailq.delivery.esp.target import EspTarget
from mailq.delivery.sender import BeforeData, SendReceipt
from mailq.errors import BackendError, BackendUnavailable

PATH = "/v2/email/outbound-emails"
SIGNING_NAME = "ses"  # the SigV4 service name of SES v2 (botocore's sesv2 signingName)
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+$")
# Tag names and values: ASCII letters, digits, '_' and '-' (API_MessageTag.html).
_TAG_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")

ERRORS_DOC = (
    "https://docs.aws.amazon.com/ses/latest/APIReference-V2/API_SendEmail.html#API_SendEmail_Errors"
)
COMMON_ERRORS_DOC = "https://docs.aws.amazon.com/ses/latest/APIReference-V2/CommonErrors.html"

# SendEmail's documented errors (ERRORS_DOC), then the common errors (COMMON_ERRORS_DOC).
SES_ERRORS: Mapping[str, Documented] = {
    "AccountSuspendedException": Documented(
        Verdict.BACKEND, "the account's ability to send email has been permanently restricted"
    ),
    "BadRequestException": Documented(Verdict.PERMANENT, "the input you provided is invalid"),
    "LimitExceededException": Documented(
        Verdict.TRANSIENT, "there are too many instances of the specified resource type"
    ),
    "MailFromDomainNotVerifiedException": Documented(
        Verdict.BACKEND, "the sending domain isn't verified"
    ),
    "MessageRejected": Documented(Verdict.PERMANENT, "the message contains invalid content"),
    "NotFoundException": Documented(
        Verdict.BACKEND, "the resource you attempted to access doesn't exist"
    ),
    "SendingPausedException": Documented(
        Verdict.BACKEND, "the account's ability to send email is currently paused"
    ),
    "TooManyRequestsException": Documented(Verdict.TRANSIENT, "too many requests"),
    # Common errors.
    "AccessDeniedException": Documented(Verdict.BACKEND, "insufficient access"),
    "ExpiredTokenException": Documented(Verdict.BACKEND, "the security token has expired"),
    "IncompleteSignature": Documented(Verdict.BACKEND, "the request signature is incomplete"),
    "InternalFailure": Documented(Verdict.TRANSIENT, "an internal error"),
    "InvalidClientTokenId": Documented(Verdict.BACKEND, "the access key ID does not exist"),
    "NotAuthorized": Documented(Verdict.BACKEND, "no permission to perform this action"),
    "OptInRequired": Documented(Verdict.BACKEND, "the access key needs a subscription"),
    "RequestExpired": Documented(Verdict.TRANSIENT, "the request reached SES too late"),
    "ServiceUnavailable": Documented(Verdict.TRANSIENT, "the service is unavailable"),
    "SignatureDoesNotMatch": Documented(Verdict.BACKEND, "the signature does not match"),
    "ThrottlingException": Documented(Verdict.TRANSIENT, "the request was throttled"),
    "Throttling": Documented(Verdict.TRANSIENT, "the request was throttled"),
    "UnrecognizedClientException": Documented(Verdict.BACKEND, "the token is invalid"),
    "ValidationError": Documented(Verdict.PERMANENT, "the input fails to satisfy the constraints"),
}


class SesSender(HttpSender):
    provider = "ses"
    unsigned_headers = frozenset({"message-id", "date"})

    def __init__(
        self,
        region: str,
        *,
        endpoint: str | None = None,
        configuration_set: str | None = None,
        connections: int = 4,
        connect_timeout_s: float = 10.0,
        reply_timeout_s: float = 120.0,
    ) -> None:
        super().__init__(
            endpoint or f"https://email.{region}.amazonaws.com",
            connections=connections,
            connect_timeout_s=connect_timeout_s,
            reply_timeout_s=reply_timeout_s,
        )
        self.region = region
        self.configuration_set = configuration_set
        self._credentials: Any = None
        self._credentials_lock = asyncio.Lock()

    async def _frozen_credentials(self) -> Any:
        # botocore's lookup reads files and may ask an instance role over HTTP: off the loop,
        # once; refreshable (role) credentials refresh off the loop too.
        async with self._credentials_lock:
            if self._credentials is None:
                self._credentials = await asyncio.to_thread(get_session().get_credentials)
            if self._credentials is None:
                raise BackendUnavailable(
                    "ses: no AWS credentials found: set AWS_ACCESS_KEY_ID and "
                    "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE with a shared config"
                )
        if isinstance(self._credentials, RefreshableCredentials):
            return await asyncio.to_thread(self._credentials.get_frozen_credentials)
        return self._credentials.get_frozen_credentials()

    def body(self, message: OutgoingMessage) -> dict[str, Any]:
        destination: dict[str, list[str]] = {"ToAddresses": [message.to]}
        tags = [{"Name": "mailq_email_id", "Value": str(message.email_id)}]
        if message.parts is not None:
            if message.parts.cc:
                destination["CcAddresses"] = list(message.parts.cc)
            if message.parts.bcc:
                destination["BccAddresses"] = list(message.parts.bcc)
            tags.append({"Name": "mailq_kind", "Value": _TAG_UNSAFE.sub("_", message.parts.kind)})
        elif message.other_recipients:
            destination["BccAddresses"] = list(message.other_recipients)
        body: dict[str, Any] = {
            "FromEmailAddress": message.mail_from,
            "Destination": destination,
            "Content": {"Raw": {"Data": b64(message.data)}},
            "EmailTags": tags,
        }
        if self.configuration_set:
            body["ConfigurationSetName"] = self.configuration_set
        return body

    async def _signed(self, method: str, path: str, content: bytes = b"") -> httpx.Request:
        """A request signed with SigV4 (the credentials botocore finds)."""
        headers = {"Content-Type": "application/json"} if content else {}
        request = self._request(method, path, content=content, headers=headers)
        credentials = await self._frozen_credentials()
        signed = AWSRequest(method=method, url=str(request.url), data=content, headers=headers)
        SigV4Auth(credentials, SIGNING_NAME, self.region).add_auth(signed)
        for name, value in signed.headers.items():
            request.headers[name] = value
        return request

    async def probe_request(self) -> httpx.Request:
        # GetAccount: read-only, signed like a send (the credentials and the region).
        return await self._signed("GET", "/v2/email/account")

    def probe_answered(self, response: httpx.Response) -> bool:
        # GetAccount answers 200 while sending is paused (SendingEnabled false): every send
        # would then be refused with SendingPausedException, so the backend is not back.
        if not super().probe_answered(response):
            return False
        answer = json_of(response)
        return not (isinstance(answer, dict) and answer.get("SendingEnabled") is False)

    async def send(
        self, message: OutgoingMessage, before_data: BeforeData | None = None
    ) -> SendReceipt:
        request = await self._signed("POST", PATH, orjson.dumps(self.body(message)))
        if before_data is not None:
            await before_data()
        response = await self._send_request(request)
        if response.status_code == 200:
            answer = json_of(response)
            message_id = answer.get("MessageId") if isinstance(answer, dict) else None
            return receipt(self.provider, 200, message_id)
        code, text = _error(response)
        raise answer_failure(
            self.provider, response.status_code, code, text, SES_ERRORS, response.headers
        )


def _error(response: httpx.Response) -> tuple[str | None, str]:
    """The error code and message: REST-JSON (`x-amzn-ErrorType`, `__type`, `message`), or
    the query protocol's XML that some gateways (and moto's auth layer) answer with."""
    code = response.headers.get("x-amzn-errortype", "").split(":")[0] or None
    answer = json_of(response)
    if isinstance(answer, dict):
        kind = str(answer.get("__type") or answer.get("code") or "")
        code = code or kind.rpartition("#")[2] or None
        text = str(answer.get("message") or answer.get("Message") or "")
        return code, text
    body = response.text
    found_code = re.search(r"<Code>([^<]*)</Code>", body)
    found_text = re.search(r"<Message>([^<]*)</Message>", body)
    return (
        code or (found_code.group(1) if found_code else None),
        found_text.group(1) if found_text else body[:200],
    )


def from_target(target: EspTarget, **client: Any) -> SesSender:
    region = (target.host or "").lower()
    if not _REGION.match(region):
        raise BackendError("MAILQ_BACKEND ses://REGION: name the AWS region, e.g. ses://eu-west-1")
    if target.key:
        raise BackendError(
            "MAILQ_BACKEND ses://: credentials do not go in the URL; botocore reads them from "
            "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or the shared config"
        )
    return SesSender(
        region,
        endpoint=target.endpoint,
        configuration_set=target.options.get("configuration_set") or None,
        **client,
    )
