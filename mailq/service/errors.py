"""Errors the service answers with: `{"error": "<what is wrong>"}` and a status code.

Messages name the field at fault and never echo a token or a body.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mailq.db.connection import DATABASE_ERRORS
from mailq.errors import (
    CampaignClosed,
    CampaignNotFound,
    InvalidEmail,
    SchemaMismatch,
)

logger = logging.getLogger(__name__)


class ApiError(Exception):
    """An answer other than success, with its status and message."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


# A 503 (the database unreachable or its schema not current) tells the client when to try
# again (RFC 9110 §10.2.3): about the time a restart or failover of Postgres takes.
RETRY_AFTER_S = 5


# An error message quotes the input at most this long: an invalid address of 1 MB answers
# a short 422, not a 1 MB one.
MAX_MESSAGE_CHARS = 500


def short_message(message: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    return message if len(message) <= limit else message[: limit - 3] + "..."


def error_response(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    message = short_message(message)
    if status == 503 and not any(k.lower() == "retry-after" for k in headers or {}):
        headers = {**(headers or {}), "Retry-After": str(RETRY_AFTER_S)}
    return JSONResponse({"error": message}, status_code=status, headers=headers)


async def on_api_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.message, exc.headers)


async def on_invalid_email(_request: Request, exc: Exception) -> Response:
    return error_response(422, str(exc))


async def on_campaign_not_found(_request: Request, exc: Exception) -> Response:
    return error_response(404, str(exc))


async def on_campaign_closed(_request: Request, exc: Exception) -> Response:
    return error_response(409, str(exc))


_HTTP_MESSAGES = {
    404: "not found",
    405: "method not allowed",
}


async def on_http_exception(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = _HTTP_MESSAGES.get(exc.status_code) or str(exc.detail)
    return error_response(exc.status_code, message, exc.headers)


async def on_database_error(request: Request, exc: Exception) -> Response:
    logger.warning(
        "database unavailable during %s %s: %s",
        request.method,
        request.url.path,
        exc,
        extra={"action": "database_unavailable"},
    )
    return error_response(503, "the queue's database is unavailable; try again shortly")


async def on_schema_mismatch(_request: Request, exc: Exception) -> Response:
    return error_response(503, str(exc))


async def on_unexpected(request: Request, exc: Exception) -> Response:
    logger.error(
        "unexpected error in %s %s",
        request.method,
        request.url.path,
        exc_info=exc,
        extra={"action": "internal_error"},
    )
    return error_response(500, "internal error; the service log has the details")


EXCEPTION_HANDLERS = {
    ApiError: on_api_error,
    InvalidEmail: on_invalid_email,
    CampaignNotFound: on_campaign_not_found,
    CampaignClosed: on_campaign_closed,
    HTTPException: on_http_exception,
    SchemaMismatch: on_schema_mismatch,
    # The database is unavailable (mailq.db.connection): 503, never 500.
    **dict.fromkeys(DATABASE_ERRORS, on_database_error),
    Exception: on_unexpected,
}


class RetryAfterOn503:
    """ASGI middleware: every 503 the app answers carries `Retry-After` (SPEC.md), whichever
    route or handler produced it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 503:
                headers = list(message.get("headers", []))
                if not any(name.lower() == b"retry-after" for name, _value in headers):
                    headers.append((b"retry-after", str(RETRY_AFTER_S).encode()))
                    message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, sending)
