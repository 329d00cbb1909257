"""Resend's email API (`resend://API_KEY@`), single and batch (up to 100 a call).

Sending: https://resend.com/docs/api-reference/emails/send-email
Batches: https://resend.com/docs/api-reference/emails/send-batch-emails
         https://resend.com/docs/dashboard/emails/batch-validation-modes
Idempotency: https://resend.com/docs/dashboard/emails/idempotency-keys
Errors:  https://resend.com/docs/api-reference/errors

Every request carries an `Idempotency-Key` (kept 24 h by Resend): for one email it is derived
from its Message-ID, for a batch from the batch's Message-IDs (sorted, and the batch is sent
in that order), so a request sent again after a crash carries the same key and the same body
and Resend answers it without sending twice. Batches take no attachments: a message with
attachments goes alone to /emails, beside the batch. Batches are sent in permissive
validation mode, so one invalid email fails alone.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from mailq.compose.message import OutgoingMessage
from mailq.delivery.esp.client import (
    BatchResult,
    HttpSender,
    b64,
    filled,
    json_of,
    parts_of,
    receipt,
    settle,
)
from mailq.delivery.esp.outcomes import Documented, Verdict, answer_failure, failure
from mailq.delivery.esp.target import EspTarget
from mailq.delivery.sender import BeforeData, SendReceipt
from mailq.errors import SendFailure

DEFAULT_ENDPOINT = "https://api.resend.com"
MAX_BATCH = 100
_TAG_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")  # tag names and values: letters, digits, _ and -

ERRORS_DOC = "https://resend.com/docs/api-reference/errors"

# The error types of ERRORS_DOC. The status decides first (401/403 the backend's, 429 and 5xx
# transient: `validation_error` at 403 is an unverified domain, at 400 a bad field).
RESEND_ERRORS: Mapping[str, Documented] = {
    "invalid_idempotency_key": Documented(Verdict.PERMANENT, "the key must be 1-256 chars"),
    "validation_error": Documented(Verdict.PERMANENT, "an error in one or more fields"),
    "missing_api_key": Documented(Verdict.BACKEND, "missing API key"),
    "restricted_api_key": Documented(Verdict.BACKEND, "the API key may only send emails"),
    "invalid_api_key": Documented(Verdict.BACKEND, "API key is invalid"),
    "not_found": Documented(Verdict.BACKEND, "the requested endpoint does not exist"),
    "method_not_allowed": Documented(Verdict.BACKEND, "method is not allowed"),
    "invalid_idempotent_request": Documented(
        Verdict.PERMANENT, "same idempotency key used with a different request payload"
    ),
    "concurrent_idempotent_requests": Documented(
        Verdict.TRANSIENT, "same idempotency key used while the first request is in progress"
    ),
    "invalid_attachment": Documented(Verdict.PERMANENT, "attachment must have content or path"),
    "invalid_from_address": Documented(Verdict.PERMANENT, "invalid from field"),
    "invalid_access": Documented(Verdict.BACKEND, "access must be full_access or sending_access"),
    "invalid_parameter": Documented(Verdict.PERMANENT, "a parameter is invalid"),
    "invalid_region": Documented(Verdict.BACKEND, "region must be one of the offered regions"),
    "missing_required_field": Documented(Verdict.PERMANENT, "a required field is missing"),
    "monthly_quota_exceeded": Documented(Verdict.TRANSIENT, "monthly quota exceeded"),
    "daily_quota_exceeded": Documented(Verdict.TRANSIENT, "daily quota exceeded"),
    "rate_limit_exceeded": Documented(Verdict.TRANSIENT, "too many requests"),
    "security_error": Documented(Verdict.PERMANENT, "a security issue was found in the request"),
    "application_error": Documented(Verdict.TRANSIENT, "an unexpected error occurred"),
    "internal_server_error": Documented(Verdict.TRANSIENT, "an unexpected error occurred"),
}


def idempotency_key(message_ids: Sequence[str]) -> str:
    """The key of a request: the same Message-IDs always give the same key (and a key is
    at most 256 characters whatever they hold)."""
    digest = hashlib.sha256("\n".join(message_ids).encode("utf-8")).hexdigest()
    return f"mailq-{digest}" if len(message_ids) == 1 else f"mailq-batch-{digest}"


class ResendSender(HttpSender):
    provider = "resend"
    max_batch = MAX_BATCH

    def __init__(
        self,
        api_key: str,
        *,
        endpoint: str | None = None,
        connections: int = 4,
        connect_timeout_s: float = 10.0,
        reply_timeout_s: float = 120.0,
    ) -> None:
        super().__init__(
            endpoint or DEFAULT_ENDPOINT,
            headers={"Authorization": f"Bearer {api_key}"},
            connections=connections,
            connect_timeout_s=connect_timeout_s,
            reply_timeout_s=reply_timeout_s,
        )

    async def probe_request(self) -> httpx.Request:
        # "List domains": read-only. A key restricted to sending answers 401
        # restricted_api_key, which still proves the key and the service (probe_answered).
        return self._request("GET", "/domains")

    def probe_answered(self, response: httpx.Response) -> bool:
        if response.status_code == 401:
            answer = json_of(response)
            return isinstance(answer, dict) and answer.get("name") == "restricted_api_key"
        return super().probe_answered(response)

    def body(self, message: OutgoingMessage) -> dict[str, Any]:
        parts = parts_of(message, self.provider)
        body: dict[str, Any] = {
            "from": parts.from_header,
            "to": [parts.to],
            "subject": parts.subject,
            "text": parts.text,
        }
        if parts.html is not None:
            body["html"] = parts.html
        if parts.cc:
            body["cc"] = list(parts.cc)
        if parts.bcc:
            body["bcc"] = list(parts.bcc)
        if parts.reply_to:
            body["reply_to"] = list(parts.reply_to)
        body["headers"] = {**dict(parts.headers), "Message-ID": message.message_id}
        body["tags"] = [
            {"name": "mailq_email_id", "value": str(message.email_id)},
            {"name": "mailq_kind", "value": _TAG_UNSAFE.sub("_", parts.kind)},
        ]
        if parts.attachments:
            body["attachments"] = [
                {
                    "filename": a.filename,
                    "content": b64(a.content),
                    "content_type": a.content_type,
                    **({"content_id": a.content_id} if a.content_id else {}),
                }
                for a in parts.attachments
            ]
        return body

    async def send(
        self, message: OutgoingMessage, before_data: BeforeData | None = None
    ) -> SendReceipt:
        body = self.body(message)
        if before_data is not None:
            await before_data()
        key = idempotency_key([message.message_id])
        response = await self._post_json("/emails", body, {"Idempotency-Key": key})
        answer = json_of(response)
        if response.status_code == 200 and isinstance(answer, dict):
            return receipt(self.provider, 200, answer.get("id"))
        raise _refusal(response, answer)

    async def send_batch(
        self, messages: Sequence[OutgoingMessage], before_data: BeforeData | None = None
    ) -> list[BatchResult]:
        """One POST /emails/batch for the messages without attachments (in Message-ID order,
        at most 100 a request), one POST /emails for each message with attachments."""
        results: list[BatchResult | None] = [None] * len(messages)
        batch: list[tuple[int, dict[str, Any]]] = []
        alone: list[int] = []
        for index, message in enumerate(messages):
            try:
                body = self.body(message)
            except SendFailure as failed:
                results[index] = failed
                continue
            if "attachments" in body:
                alone.append(index)
            else:
                batch.append((index, body))
        try:
            if before_data is not None and (batch or alone):
                await before_data()
        except SendFailure as failed:
            return [failed] * len(messages)
        batch.sort(key=lambda item: messages[item[0]].message_id)
        chunks = [batch[i : i + MAX_BATCH] for i in range(0, len(batch), MAX_BATCH)]
        chunk_outcomes, single_results = await asyncio.gather(
            asyncio.gather(*(self._post_chunk(messages, chunk) for chunk in chunks)),
            asyncio.gather(*(settle(self.send(messages[i])) for i in alone)),
        )
        for chunk, outcome in zip(chunks, chunk_outcomes, strict=True):
            for (index, _), result in zip(chunk, outcome, strict=True):
                results[index] = result
        for index, single in zip(alone, single_results, strict=True):
            results[index] = single
        return [filled(r) for r in results]

    async def _post_chunk(
        self, messages: Sequence[OutgoingMessage], chunk: list[tuple[int, dict[str, Any]]]
    ) -> list[BatchResult]:
        key = idempotency_key([messages[index].message_id for index, _ in chunk])
        headers = {"Idempotency-Key": key, "x-batch-validation": "permissive"}
        try:
            response = await self._post_json("/emails/batch", [b for _, b in chunk], headers)
        except SendFailure as failed:
            return [failed] * len(chunk)
        answer = json_of(response)
        if response.status_code != 200 or not isinstance(answer, dict):
            return [_refusal(response, answer)] * len(chunk)
        errors = {
            e.get("index"): str(e.get("message") or "refused")
            for e in answer.get("errors") or []
            if isinstance(e, dict)
        }
        created = iter(answer.get("data") or [])
        outcome: list[BatchResult] = []
        for position in range(len(chunk)):
            if position in errors:
                outcome.append(
                    failure(
                        Verdict.PERMANENT,
                        f"resend: refused in the batch: {errors[position]}",
                        reply=errors[position],
                    )
                )
                continue
            item = next(created, None)
            if not isinstance(item, dict) or not item.get("id"):
                outcome.append(
                    failure(Verdict.TRANSIENT, "resend: the batch answer lacks this email's id")
                )
                continue
            outcome.append(receipt(self.provider, 200, str(item["id"]), "batch"))
        return outcome


def _refusal(response: httpx.Response, answer: Any) -> SendFailure:
    if isinstance(answer, dict):
        name = answer.get("name")
        return answer_failure(
            "resend",
            response.status_code,
            str(name) if name else None,
            str(answer.get("message") or ""),
            RESEND_ERRORS,
            response.headers,
        )
    return answer_failure(
        "resend", response.status_code, None, response.text[:200], RESEND_ERRORS, response.headers
    )


def from_target(target: EspTarget, **client: Any) -> ResendSender:
    return ResendSender(target.require_key("api key"), endpoint=target.endpoint, **client)
