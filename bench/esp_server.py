"""A local server that answers like Postmark's email API, for the ESP measure (bench/esp.py).

    python -m bench.esp_server --port P --latency-ms L

It answers `POST /email` and `POST /email/batch` as Postmark documents
(https://postmarkapp.com/developer/api/email-api: one result object; for a batch a list of
them, in order, each with ErrorCode 0 and a MessageID) after `--latency-ms` (the provider's
time to answer), `GET /server` (the breaker's probe) with the server, and 401 with
ErrorCode 10 to a request without the X-Postmark-Server-Token header. `GET /_bench` tells
the bench what it received: requests, messages and distinct client connections.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import UTC, datetime
from typing import Any

import orjson
import uvicorn

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

TOKEN_HEADER = b"x-postmark-server-token"


class PostmarkLike:
    def __init__(self, latency_s: float) -> None:
        self.latency_s = latency_s
        self.requests = 0
        self.messages = 0
        self.connections: set[tuple[str, int]] = set()
        self._ids = itertools.count(1)
        self._prefix = uuid.uuid4().hex[:8]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = bytearray()
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        status, answer = await self._answer(scope, bytes(body))
        content = orjson.dumps(answer)
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", b"%d" % len(content)),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": content})

    async def _answer(self, scope: Scope, body: bytes) -> tuple[int, Any]:
        path, method = scope["path"], scope["method"]
        if path == "/_bench":
            return 200, {
                "requests": self.requests,
                "messages": self.messages,
                "connections": len(self.connections),
            }
        if not any(name == TOKEN_HEADER and value for name, value in scope["headers"]):
            return 401, {"ErrorCode": 10, "Message": "Bad or missing Server API token."}
        if (method, path) == ("GET", "/server"):
            return 200, {"ID": 1, "Name": "bench"}
        if method != "POST" or path not in ("/email", "/email/batch"):
            return 404, {"ErrorCode": 0, "Message": "Not found"}
        client = scope.get("client")
        if client:
            self.connections.add((str(client[0]), int(client[1])))
        payload = orjson.loads(body)
        self.requests += 1
        await asyncio.sleep(self.latency_s)
        if path == "/email":
            self.messages += 1
            return 200, self._result(payload)
        self.messages += len(payload)
        return 200, [self._result(item) for item in payload]

    def _result(self, item: Any) -> dict[str, Any]:
        return {
            "To": item.get("To", ""),
            "SubmittedAt": datetime.now(UTC).isoformat(),
            "MessageID": f"{self._prefix}-{next(self._ids)}",
            "ErrorCode": 0,
            "Message": "OK",
        }


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.esp_server")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    args = parser.parse_args()
    app = PostmarkLike(args.latency_ms / 1000.0)
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
        lifespan="off",
        backlog=4096,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
