"""What every ESP backend shares: one httpx.AsyncClient per sender, the mapping of transport
errors, and a default `send_batch` for providers without a batch call.

The client keeps connections alive, speaks HTTP/2 where the provider offers it (negotiated by
TLS ALPN; plain-http endpoints such as test servers speak HTTP/1.1) and has the timeouts of
the SMTP backend: `connect_timeout_s` to connect, `reply_timeout_s` for each read, write and
wait for a free connection.

A connection that fails before the request is sent is the backend's failure
(BackendUnavailable); one that fails after it is a RetryLater, because the provider may have
taken the email (as after SMTP DATA: the README's duplicate window).
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any, ClassVar

import httpx
import orjson

from mailq.compose.message import MessageParts, OutgoingMessage
from mailq.delivery.sender import BeforeData, SendReceipt
from mailq.errors import BackendUnavailable, PermanentFailure, RetryLater, SendFailure

# One result per message of a batch, in the order given.
BatchResult = SendReceipt | SendFailure

USER_AGENT = "mailq"


class HttpSender:
    """Base of the ESP senders. `max_batch` is how many messages one `send_batch` request
    takes (1: the provider has no batch call; `send_batch` then sends them concurrently).
    `unsigned_headers` are headers the provider rewrites, which a DKIM signature made by
    mailq must not cover."""

    provider: ClassVar[str] = "esp"
    max_batch: int = 1
    unsigned_headers: frozenset[str] = frozenset()

    def __init__(
        self,
        base_url: str,
        *,
        headers: Mapping[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        connections: int = 4,
        connect_timeout_s: float = 10.0,
        reply_timeout_s: float = 120.0,
    ) -> None:
        self.base_url = base_url
        # What the backend's circuit breaker is named by (no credentials).
        self.backend_name = f"{self.provider}:{base_url.rstrip('/')}"
        self.http2 = True
        slots = max(1, connections)
        self._client = httpx.AsyncClient(
            base_url=base_url,
            headers={"User-Agent": USER_AGENT, "Accept": "application/json", **(headers or {})},
            auth=auth,
            http2=self.http2,
            limits=httpx.Limits(max_connections=slots, max_keepalive_connections=slots),
            timeout=httpx.Timeout(reply_timeout_s, connect=connect_timeout_s),
        )

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Request:
        return self._client.build_request(method, path, **kwargs)

    async def _send_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await self._client.send(request)
        except httpx.HTTPError as exc:
            raise transport_failure(self.provider, exc) from None

    async def _post_json(
        self, path: str, body: object, headers: Mapping[str, str] | None = None
    ) -> httpx.Response:
        request = self._request(
            "POST",
            path,
            content=orjson.dumps(body),
            headers={"Content-Type": "application/json", **(headers or {})},
        )
        return await self._send_request(request)

    async def send(
        self, message: OutgoingMessage, before_data: BeforeData | None = None
    ) -> SendReceipt:
        raise NotImplementedError

    async def send_batch(
        self, messages: Sequence[OutgoingMessage], before_data: BeforeData | None = None
    ) -> list[BatchResult]:
        """One result per message, in order: a SendReceipt or the SendFailure (returned, not
        raised; a failure of a whole request is the result of each of its messages).
        `before_data` is awaited once, before the first request."""
        if not messages:
            return []
        try:
            if before_data is not None:
                await before_data()
        except SendFailure as failed:
            return [failed] * len(messages)
        return list(await asyncio.gather(*(settle(self.send(m)) for m in messages)))

    async def probe_request(self) -> httpx.Request:
        """The provider's authenticated no-op request (its account or server, never an
        email) that the circuit breaker probes the backend with."""
        raise NotImplementedError

    def probe_answered(self, response: httpx.Response) -> bool:
        """Whether the probe's answer shows the backend usable again: a 2xx only (the
        credentials taken and the service answering). A 401/403 (credentials refused), a
        404 (the domain or account looked up is gone: sends fail too), a redirect, a 429 or
        a 5xx keeps the breaker open; so does no answer (a timeout). A provider whose
        documented answer proves more, or less, says so in its own `probe_answered`."""
        return 200 <= response.status_code < 300

    async def probe(self) -> None:
        """BackendUnavailable unless the provider takes the credentials and answers."""
        response = await self._send_request(await self.probe_request())
        if not self.probe_answered(response):
            detail = response.text.strip()[:200]
            raise BackendUnavailable(
                f"{self.provider}: the probe was answered HTTP {response.status_code}: {detail}"
            )

    async def close(self) -> None:
        await self._client.aclose()


async def settle(sending: Awaitable[SendReceipt]) -> BatchResult:
    try:
        return await sending
    except SendFailure as failed:
        return failed


def filled(result: BatchResult | None) -> BatchResult:
    assert result is not None, "every message of a batch has a result"
    return result


def transport_failure(provider: str, exc: httpx.HTTPError) -> SendFailure:
    detail = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return BackendUnavailable(f"{provider}: cannot connect: {detail}")
    if isinstance(exc, httpx.PoolTimeout):
        return RetryLater(f"{provider}: no free connection within the timeout")
    return RetryLater(
        f"{provider}: no complete answer ({type(exc).__name__}: {detail}); "
        "the provider may have taken the email"
    )


def json_of(response: httpx.Response) -> Any:
    """The decoded JSON body, or None when the body is not JSON."""
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return None


def parts_of(message: OutgoingMessage, provider: str) -> MessageParts:
    if message.parts is None:
        raise PermanentFailure(
            f"{provider}: the message has no parts (build it with mailq.message.build_message)"
        )
    return message.parts


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def receipt(provider: str, status: int, provider_id: str | None, note: str = "") -> SendReceipt:
    """An accepted message: the provider's id and its words, where the SMTP reply would be."""
    said = f"accepted by {provider} (HTTP {status}{', ' + note if note else ''})"
    if provider_id:
        said += f", id {provider_id}"
    return SendReceipt(smtp_reply=said, provider_message_id=provider_id)


def metadata(message: OutgoingMessage) -> dict[str, str]:
    """What names the email in the provider's later events (webhooks)."""
    return {"mailq_email_id": str(message.email_id), "mailq_message_id": message.message_id}
