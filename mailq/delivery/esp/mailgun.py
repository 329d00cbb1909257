"""Mailgun's `messages.mime` (`mailgun://API_KEY@DOMAIN[?region=eu]`): the raw MIME mailq
builds, with the envelope's recipients; one email a request.

Sending: https://documentation.mailgun.com/docs/mailgun/api-reference/send/mailgun/messages/post-v3--domain-name--messages-mime
Errors:  https://documentation.mailgun.com/docs/mailgun/quickstart-guide/responses

The answer is `{"id": "<...>", "message": "Queued. Thank you."}`; the id (without its angle
brackets) is what Mailgun's events call the message-id. Mailgun has no idempotency key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import httpx

from mailq.compose.message import OutgoingMessage
from mailq.delivery.esp.client import HttpSender, json_of, metadata, receipt
from mailq.delivery.esp.outcomes import Documented, Verdict, answer_failure
from mailq.delivery.esp.target import EspTarget
from mailq.delivery.sender import BeforeData, SendReceipt
from mailq.errors import BackendError

ENDPOINTS = {"us": "https://api.mailgun.net", "eu": "https://api.eu.mailgun.net"}

ERRORS_DOC = "https://documentation.mailgun.com/docs/mailgun/quickstart-guide/responses"

# Mailgun answers errors by status with a {"message": ...} (or a plain "Forbidden").
MAILGUN_ERRORS: Mapping[int, Documented] = {
    400: Documented(Verdict.PERMANENT, "bad request: the message says what to change"),
    401: Documented(Verdict.BACKEND, "unauthorized: the API key is wrong"),
    402: Documented(Verdict.BACKEND, "request failed (the account's plan or payment)"),
    403: Documented(Verdict.BACKEND, "auth error or access denied"),
    404: Documented(Verdict.BACKEND, "resource not found (the sending domain)"),
    413: Documented(Verdict.PERMANENT, "request too large (messages are at most 25 MB)"),
    429: Documented(Verdict.TRANSIENT, "rate limited: retry as the response says"),
    500: Documented(Verdict.TRANSIENT, "internal error: retry with backoff"),
}


class MailgunSender(HttpSender):
    provider = "mailgun"

    def __init__(
        self,
        api_key: str,
        domain: str,
        *,
        endpoint: str | None = None,
        connections: int = 4,
        connect_timeout_s: float = 10.0,
        reply_timeout_s: float = 120.0,
    ) -> None:
        super().__init__(
            endpoint or ENDPOINTS["us"],
            auth=("api", api_key),
            connections=connections,
            connect_timeout_s=connect_timeout_s,
            reply_timeout_s=reply_timeout_s,
        )
        self.domain = domain
        self.path = f"/v3/{quote(domain, safe='')}/messages.mime"

    async def probe_request(self) -> httpx.Request:
        # "Get a domain": read-only, answered with the API key.
        return self._request("GET", f"/v3/domains/{quote(self.domain, safe='')}")

    def form(self, message: OutgoingMessage) -> dict[str, str | list[str]]:
        data: dict[str, str | list[str]] = {"to": [message.to, *message.other_recipients]}
        if message.parts is not None:
            data["o:tag"] = message.parts.kind
        for name, value in metadata(message).items():
            data[f"v:{name}"] = value
        return data

    async def send(
        self, message: OutgoingMessage, before_data: BeforeData | None = None
    ) -> SendReceipt:
        request = self._request(
            "POST",
            self.path,
            data=self.form(message),
            files={"message": ("message.eml", message.data, "message/rfc822")},
        )
        if before_data is not None:
            await before_data()
        response = await self._send_request(request)
        answer = json_of(response)
        if response.status_code == 200:
            given = answer.get("id") if isinstance(answer, dict) else None
            provider_id = str(given).strip("<>") if given else None
            note = str(answer.get("message") or "") if isinstance(answer, dict) else ""
            return receipt(self.provider, 200, provider_id, note)
        text = (
            str(answer.get("message") or "")
            if isinstance(answer, dict)
            else response.text.strip()[:200]
        )
        raise answer_failure(
            self.provider,
            response.status_code,
            response.status_code,
            text,
            MAILGUN_ERRORS,
            response.headers,
        )


def from_target(target: EspTarget, **client: Any) -> MailgunSender:
    if not target.host:
        raise BackendError("MAILQ_BACKEND mailgun://API_KEY@DOMAIN: name the sending domain")
    region = target.options.get("region", "us").lower()
    if region not in ENDPOINTS:
        raise BackendError("MAILQ_BACKEND mailgun://: region= is us or eu")
    return MailgunSender(
        target.require_key("api key"),
        target.host,
        endpoint=target.endpoint or ENDPOINTS[region],
        **client,
    )
