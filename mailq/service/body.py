"""Reading a request body: bounded in size while it streams in, then strict JSON."""

from __future__ import annotations

import json
import math
import re
from typing import Any

from starlette.requests import Request

from mailq.service.errors import ApiError

# A JSON escape of a UTF-16 surrogate: only then can the parsed text hold a lone surrogate,
# which UTF-8 (and so Postgres) cannot store.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, or 413 as soon as it is known to be over `limit` bytes: from
    Content-Length before reading anything, else while the chunks arrive (at most `limit`
    bytes plus one chunk are ever held)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not (declared.isascii() and declared.isdigit()):
            raise ApiError(400, "Content-Length: not a number")
        # A length of thousands of digits is over any limit (and over int()'s digit limit).
        if len(declared) > 18 or int(declared) > limit:
            raise _too_large(limit)
    received = bytearray()
    async for chunk in request.stream():
        received += chunk
        if len(received) > limit:
            raise _too_large(limit)
    return bytes(received)


def _too_large(limit: int) -> ApiError:
    return ApiError(413, f"body: larger than the limit of {limit} bytes")


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def parse_json(raw: bytes) -> Any:
    """Strict JSON: UTF-8, no NaN/Infinity, no number too large for a double, no lone
    surrogate. 400 naming what is wrong otherwise."""
    if not raw.strip():
        raise ApiError(400, "body: a JSON object is required")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "body: not UTF-8") from None
    try:
        value = json.loads(text, parse_float=_finite, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        message = f"body: not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        raise ApiError(400, message) from None
    except (ValueError, RecursionError) as exc:
        detail = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise ApiError(400, f"body: not acceptable JSON ({detail})") from None
    if _SURROGATE_ESCAPE.search(text):
        where = _lone_surrogate(value, "")
        if where is not None:
            raise ApiError(400, f"{where or 'body'}: invalid Unicode (a lone surrogate)")
    return value


def _lone_surrogate(value: Any, path: str) -> str | None:
    """The path of the first string (or key) holding a lone surrogate, else None."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return path
        return None
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = _lone_surrogate(item, f"{path}[{index}]")
            if found is not None:
                return found
    if isinstance(value, dict):
        for key, item in value.items():
            if _lone_surrogate(key, "") is not None:
                return path or "body"
            found = _lone_surrogate(item, f"{path}.{key}" if path else key)
            if found is not None:
                return found
    return None


async def read_json(request: Request, limit: int) -> Any:
    return parse_json(await read_body(request, limit))
