"""Postmark's email API (`postmark://SERVER_TOKEN@`), single and batch (up to 500 a call).

Sending: https://postmarkapp.com/developer/api/email-api
Batches: https://postmarkapp.com/developer/user-guide/send-email-with-api/batch-emails
Errors:  https://postmarkapp.com/developer/api/overview#error-codes

The batch endpoint answers 200 with one result per message, in order, each with its own
ErrorCode. Postmark has no idempotency key: a crash between its answer and the outcome's
commit sends those messages again (the README's duplicate window, widened to the batch).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
import orjson

from mailq.compose.message import OutgoingMessage
from mailq.delivery.esp.client import (
    BatchResult,
    HttpSender,
    b64,
    filled,
    json_of,
    metadata,
    parts_of,
    receipt,
)
from mailq.delivery.esp.outcomes import Documented, Verdict, answer_failure
from mailq.delivery.esp.target import EspTarget
from mailq.delivery.sender import BeforeData, SendReceipt
from mailq.errors import SendFailure

DEFAULT_ENDPOINT = "https://api.postmarkapp.com"
MAX_BATCH = 500
MAX_BATCH_BYTES = 50 * 1000 * 1000  # "up to 50 MB payload size, including attachments"
METADATA_VALUE_MAX = 80  # Metadata values: at most 80 characters

ERRORS_DOC = "https://postmarkapp.com/developer/api/overview#error-codes"

# The API error codes of ERRORS_DOC that sending can answer (the others are of the
# management API: servers, signatures, templates, ...).
POSTMARK_ERRORS: Mapping[int, Documented] = {
    10: Documented(Verdict.BACKEND, "bad or missing API token"),
    100: Documented(Verdict.TRANSIENT, "maintenance"),
    300: Documented(Verdict.PERMANENT, "invalid email request"),
    400: Documented(Verdict.BACKEND, "sender signature not found"),
    401: Documented(Verdict.BACKEND, "sender signature not confirmed"),
    402: Documented(Verdict.PERMANENT, "invalid JSON"),
    403: Documented(Verdict.PERMANENT, "incompatible JSON"),
    405: Documented(Verdict.BACKEND, "not allowed to send (the account ran out of credits)"),
    406: Documented(Verdict.SUPPRESS, "inactive recipient (hard bounce or spam complaint)"),
    409: Documented(Verdict.PERMANENT, "JSON required"),
    410: Documented(Verdict.PERMANENT, "too many batch messages"),
    411: Documented(Verdict.PERMANENT, "forbidden attachment type"),
    412: Documented(Verdict.BACKEND, "account is pending"),
    413: Documented(Verdict.BACKEND, "account may not send"),
    429: Documented(Verdict.TRANSIENT, "rate limit exceeded"),
}


class PostmarkSender(HttpSender):
    provider = "postmark"
    max_batch = MAX_BATCH

    def __init__(
        self,
        server_token: str,
        *,
        endpoint: str | None = None,
        message_stream: str | None = None,
        connections: int = 4,
        connect_timeout_s: float = 10.0,
        reply_timeout_s: float = 120.0,
    ) -> None:
        super().__init__(
            endpoint or DEFAULT_ENDPOINT,
            headers={"X-Postmark-Server-Token": server_token},
            connections=connections,
            connect_timeout_s=connect_timeout_s,
            reply_timeout_s=reply_timeout_s,
        )
        self.message_stream = message_stream

    async def probe_request(self) -> httpx.Request:
        # "Get the server": read-only, answered with the server token.
        return self._request("GET", "/server")

    def body(self, message: OutgoingMessage) -> dict[str, Any]:
        parts = parts_of(message, self.provider)
        body: dict[str, Any] = {
            "From": parts.from_header,
            "To": parts.to,
            "Subject": parts.subject,
            "TextBody": parts.text,
        }
        if parts.html is not None:
            body["HtmlBody"] = parts.html
        if parts.cc:
            body["Cc"] = ", ".join(parts.cc)
        if parts.bcc:
            body["Bcc"] = ", ".join(parts.bcc)
        if parts.reply_to:
            body["ReplyTo"] = ", ".join(parts.reply_to)
        body["Headers"] = [
            {"Name": name, "Value": value}
            for name, value in (*parts.headers, ("Message-ID", message.message_id))
        ]
        body["Tag"] = parts.kind
        # Metadata values are limited to 80 characters: a longer Message-ID is left out
        # (the email id alone names the email).
        body["Metadata"] = {
            k: v for k, v in metadata(message).items() if len(v) <= METADATA_VALUE_MAX
        }
        if parts.attachments:
            body["Attachments"] = [
                {
                    "Name": a.filename,
                    "Content": b64(a.content),
                    "ContentType": a.content_type,
                    **({"ContentID": f"cid:{a.content_id}"} if a.content_id else {}),
                }
                for a in parts.attachments
            ]
        if self.message_stream:
            body["MessageStream"] = self.message_stream
        return body

    async def send(
        self, message: OutgoingMessage, before_data: BeforeData | None = None
    ) -> SendReceipt:
        body = self.body(message)
        if before_data is not None:
            await before_data()
        response = await self._post_json("/email", body)
        answer = json_of(response)
        if response.status_code == 200 and isinstance(answer, dict):
            result = self._result(message, answer, response.status_code, response.headers)
            if isinstance(result, SendFailure):
                raise result
            return result
        raise self._refusal(message, response.status_code, answer, response.text, response.headers)

    async def send_batch(
        self, messages: Sequence[OutgoingMessage], before_data: BeforeData | None = None
    ) -> list[BatchResult]:
        """One POST /email/batch per chunk of at most 500 messages and 50 MB."""
        results: list[BatchResult | None] = [None] * len(messages)
        bodies: list[tuple[int, bytes]] = []
        for index, message in enumerate(messages):
            try:
                bodies.append((index, orjson.dumps(self.body(message))))
            except SendFailure as failed:
                results[index] = failed
        try:
            if before_data is not None and bodies:
                await before_data()
        except SendFailure as failed:
            return [failed] * len(messages)
        chunks = _chunks(bodies)
        outcomes = await asyncio.gather(*(self._post_chunk(messages, c) for c in chunks))
        for chunk, outcome in zip(chunks, outcomes, strict=True):
            for (position, _), result in zip(chunk, outcome, strict=True):
                results[position] = result
        return [filled(r) for r in results]

    async def _post_chunk(
        self, messages: Sequence[OutgoingMessage], chunk: list[tuple[int, bytes]]
    ) -> list[BatchResult]:
        content = b"[" + b",".join(body for _, body in chunk) + b"]"
        request = self._request(
            "POST", "/email/batch", content=content, headers={"Content-Type": "application/json"}
        )
        try:
            response = await self._send_request(request)
        except SendFailure as failed:
            return [failed] * len(chunk)
        answer = json_of(response)
        if response.status_code != 200 or not isinstance(answer, list) or len(answer) != len(chunk):
            refusal = self._refusal(
                messages[chunk[0][0]], response.status_code, answer, response.text, response.headers
            )
            return [refusal] * len(chunk)
        return [
            self._result(
                messages[index], item if isinstance(item, dict) else {}, 200, response.headers
            )
            for (index, _), item in zip(chunk, answer, strict=True)
        ]

    def _result(
        self,
        message: OutgoingMessage,
        answer: Mapping[str, Any],
        status: int,
        headers: Mapping[str, str],
    ) -> BatchResult:
        code = answer.get("ErrorCode")
        if code == 0:
            return receipt(
                self.provider, status, answer.get("MessageID"), str(answer.get("Message") or "OK")
            )
        return self._failure(message, 422, code, str(answer.get("Message") or ""), headers)

    def _refusal(
        self,
        message: OutgoingMessage,
        status: int,
        answer: Any,
        text: str,
        headers: Mapping[str, str],
    ) -> SendFailure:
        if isinstance(answer, dict):
            code = answer.get("ErrorCode")
            return self._failure(message, status, code, str(answer.get("Message") or ""), headers)
        return self._failure(message, status, None, text[:200], headers)

    def _failure(
        self,
        message: OutgoingMessage,
        status: int,
        code: Any,
        text: str,
        headers: Mapping[str, str],
    ) -> SendFailure:
        failed = answer_failure(
            self.provider,
            status,
            code if isinstance(code, int) else None,
            text,
            POSTMARK_ERRORS,
            headers,
        )
        # 406 names the inactive addresses: suppress only when the `to` recipient is one.
        if failed.suppress and _address(message.to) not in text.lower():
            failed.suppress = False
        return failed


def _address(value: str) -> str:
    from email.utils import parseaddr

    return parseaddr(value)[1].lower()


def _chunks(bodies: list[tuple[int, bytes]]) -> list[list[tuple[int, bytes]]]:
    chunks: list[list[tuple[int, bytes]]] = []
    size = 0
    for item in bodies:
        if not chunks or len(chunks[-1]) >= MAX_BATCH or size + len(item[1]) + 1 > MAX_BATCH_BYTES:
            chunks.append([])
            size = 2
        chunks[-1].append(item)
        size += len(item[1]) + 1
    return chunks


def from_target(target: EspTarget, **client: Any) -> PostmarkSender:
    return PostmarkSender(
        target.require_key("server token"),
        endpoint=target.endpoint,
        message_stream=target.options.get("message_stream") or None,
        **client,
    )
