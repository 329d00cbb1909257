"""SendGrid's v3 Mail Send (`sendgrid://API_KEY@`): one email a request.

Sending: https://www.twilio.com/docs/sendgrid/api-reference/mail-send/mail-send
Errors:  https://www.twilio.com/docs/sendgrid/api-reference/mail-send/errors
         https://www.twilio.com/docs/sendgrid/api-reference/how-to-use-the-sendgrid-v3-api/errors

202 Accepted has no body; the message id is the `X-Message-Id` header. SendGrid has no
idempotency key. `?region=eu` uses the EU endpoint (api.eu.sendgrid.com).
"""

from __future__ import annotations

from collections.abc import Mapping
from email.utils import parseaddr
from typing import Any

import httpx

from mailq.compose.message import OutgoingMessage
from mailq.delivery.esp.client import HttpSender, b64, json_of, metadata, parts_of, receipt
from mailq.delivery.esp.outcomes import Documented, Verdict, answer_failure
from mailq.delivery.esp.target import EspTarget
from mailq.delivery.sender import BeforeData, SendReceipt
from mailq.errors import BackendError

ENDPOINTS = {"global": "https://api.sendgrid.com", "eu": "https://api.eu.sendgrid.com"}
PATH = "/v3/mail/send"

ERRORS_DOC = "https://www.twilio.com/docs/sendgrid/api-reference/mail-send/errors"

# SendGrid answers errors by status with an `errors` list of messages (no error codes).
SENDGRID_ERRORS: Mapping[int, Documented] = {
    400: Documented(Verdict.PERMANENT, "bad request: a field of the email is invalid"),
    401: Documented(Verdict.BACKEND, "requires authentication"),
    403: Documented(Verdict.BACKEND, "forbidden (an unverified sender identity, a key's scope)"),
    404: Documented(Verdict.BACKEND, "not found"),
    405: Documented(Verdict.PERMANENT, "method not allowed"),
    406: Documented(Verdict.PERMANENT, "missing Accept header"),
    413: Documented(Verdict.PERMANENT, "payload too large"),
    415: Documented(Verdict.PERMANENT, "unsupported media type"),
    429: Documented(Verdict.TRANSIENT, "too many requests / rate limit exceeded"),
    451: Documented(Verdict.BACKEND, "unavailable due to data residency restrictions"),
    500: Documented(Verdict.TRANSIENT, "internal server error"),
    502: Documented(Verdict.TRANSIENT, "bad gateway"),
    503: Documented(Verdict.TRANSIENT, "service not available"),
    504: Documented(Verdict.TRANSIENT, "gateway timeout"),
}


def _address(value: str) -> dict[str, str]:
    name, address = parseaddr(value)
    return {"email": address or value, **({"name": name} if name else {})}


class SendgridSender(HttpSender):
    provider = "sendgrid"

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
            endpoint or ENDPOINTS["global"],
            headers={"Authorization": f"Bearer {api_key}"},
            connections=connections,
            connect_timeout_s=connect_timeout_s,
            reply_timeout_s=reply_timeout_s,
        )

    async def probe_request(self) -> httpx.Request:
        # "Retrieve a list of scopes": any valid API key may read its own.
        return self._request("GET", "/v3/scopes")

    def probe_answered(self, response: httpx.Response) -> bool:
        # A key without the mail.send scope reads its scopes but has every send refused
        # (403): the backend is not back for mailq.
        if not super().probe_answered(response):
            return False
        answer = json_of(response)
        scopes = answer.get("scopes") if isinstance(answer, dict) else None
        return not isinstance(scopes, list) or "mail.send" in scopes

    def body(self, message: OutgoingMessage) -> dict[str, Any]:
        parts = parts_of(message, self.provider)
        personalization: dict[str, Any] = {"to": [_address(parts.to)]}
        if parts.cc:
            personalization["cc"] = [_address(a) for a in parts.cc]
        if parts.bcc:
            personalization["bcc"] = [_address(a) for a in parts.bcc]
        content = [{"type": "text/plain", "value": parts.text}]  # text/plain must come first
        if parts.html is not None:
            content.append({"type": "text/html", "value": parts.html})
        body: dict[str, Any] = {
            "personalizations": [personalization],
            "from": _address(parts.from_header),
            "subject": parts.subject,
            "content": content,
            "headers": {**dict(parts.headers), "Message-ID": message.message_id},
            "custom_args": metadata(message),
            "categories": [parts.kind],
        }
        if len(parts.reply_to) == 1:
            body["reply_to"] = _address(parts.reply_to[0])
        elif parts.reply_to:
            body["reply_to_list"] = [_address(a) for a in parts.reply_to]
        if parts.attachments:
            body["attachments"] = [
                {
                    "content": b64(a.content),
                    "type": a.content_type,
                    "filename": a.filename,
                    "disposition": "inline" if a.content_id else "attachment",
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
        response = await self._post_json(PATH, body)
        if response.status_code in (200, 202):
            return receipt(
                self.provider, response.status_code, response.headers.get("x-message-id")
            )
        answer = json_of(response)
        text = response.text[:200]
        if isinstance(answer, dict) and isinstance(answer.get("errors"), list):
            text = "; ".join(
                str(e.get("message") or "") + (f" ({e['field']})" if e.get("field") else "")
                for e in answer["errors"]
                if isinstance(e, dict)
            )
        raise answer_failure(
            self.provider,
            response.status_code,
            response.status_code,
            text,
            SENDGRID_ERRORS,
            response.headers,
        )


def from_target(target: EspTarget, **client: Any) -> SendgridSender:
    region = target.options.get("region", "global").lower()
    if region not in ENDPOINTS:
        raise BackendError("MAILQ_BACKEND sendgrid://: region= is global or eu")
    return SendgridSender(
        target.require_key("api key"), endpoint=target.endpoint or ENDPOINTS[region], **client
    )
