"""A loopback HTTP server that answers like an ESP: real sockets, real HTTP (uvicorn).

Each test scripts the answers (`provider.answer(...)`, used in order; then the default
answer) and reads back every request it received (`provider.seen`). An answer may be a
coroutine function (to hold a request until the test lets it go).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import re
import socket
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.support.waiting import eventually


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    def form(self) -> tuple[dict[str, list[str]], dict[str, tuple[str | None, str, bytes]]]:
        """A multipart/form-data body (RFC 7578): its fields, and its files (filename,
        content type, the exact bytes). Split by hand: the stdlib parser would parse a
        message/rfc822 file as a message and lose its bytes."""
        boundary = re.search(r'boundary="?([^";]+)"?', self.headers["content-type"])
        assert boundary, "a multipart body names its boundary"
        delimiter = b"--" + boundary.group(1).encode()
        fields: dict[str, list[str]] = {}
        files: dict[str, tuple[str | None, str, bytes]] = {}
        for chunk in self.body.split(delimiter)[1:]:
            if chunk.startswith(b"--"):
                break
            head, _, payload = chunk.removeprefix(b"\r\n").partition(b"\r\n\r\n")
            payload = payload.removesuffix(b"\r\n")
            text = head.decode()
            name = re.search(r'name="([^"]*)"', text)
            filename = re.search(r'filename="([^"]*)"', text)
            kind = re.search(r"(?im)^content-type:\s*([^\r\n;]+)", text)
            assert name, "each part names its field"
            if filename:
                files[name.group(1)] = (
                    filename.group(1),
                    kind.group(1).strip() if kind else "application/octet-stream",
                    payload,
                )
            else:
                fields.setdefault(name.group(1), []).append(payload.decode())
        return fields, files


Answer = Callable[[Seen], Response | Awaitable[Response]]


def reply(status: int = 200, body: Any = None, headers: dict[str, str] | None = None) -> Answer:
    def answer(seen: Seen) -> Response:
        content = b"" if body is None else body if isinstance(body, bytes) else json.dumps(body)
        media = None if body is None or isinstance(body, bytes) else "application/json"
        return Response(content, status_code=status, headers=headers, media_type=media)

    return answer


@dataclass
class FakeProvider:
    default: Answer
    seen: list[Seen] = field(default_factory=list)
    url: str = ""
    _script: deque[Answer] = field(default_factory=deque)

    def answer(self, *answers: Answer) -> None:
        self._script.extend(answers)

    async def _handle(self, request: Request) -> Response:
        seen = Seen(request.method, request.url.path, dict(request.headers), await request.body())
        self.seen.append(seen)
        answer = self._script.popleft() if self._script else self.default
        response = answer(seen)
        if inspect.isawaitable(response):
            response = await response
        return response


@asynccontextmanager
async def running(default: Answer) -> AsyncIterator[FakeProvider]:
    provider = FakeProvider(default)
    methods = ["GET", "POST", "PUT", "DELETE", "PATCH"]
    app = Starlette(routes=[Route("/{path:path}", provider._handle, methods=methods)])
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    host, port = sock.getsockname()
    provider.url = f"http://{host}:{port}"
    server = uvicorn.Server(
        uvicorn.Config(app, lifespan="off", log_level="warning", access_log=False)
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await eventually(
            lambda: server.started or task.done(), interval=0.005, message="the ESP did not start"
        )
        if task.done():
            task.result()  # it failed to start: its error
        yield provider
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        sock.close()
