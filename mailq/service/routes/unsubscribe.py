"""Unsubscribe links (no bearer token: the signed token in the URL authorises).

`GET /v1/unsubscribe/{token}` shows a confirmation page and changes nothing (mail scanners
and link previews fetch URLs); its form POSTs back. `POST /v1/unsubscribe/{token}` is also
the RFC 8058 one-click endpoint: mailbox providers POST `List-Unsubscribe=One-Click`. Both
check the token's signature with the key the workers sign with, then suppress the address.
"""

from __future__ import annotations

import html
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from mailq.compose.unsubscribe import read_token
from mailq.errors import InvalidToken
from mailq.service.api import Role, Router
from mailq.service.body import read_body
from mailq.service.errors import ApiError
from mailq.service.openapi import errors
from mailq.service.state import service_of
from mailq.suppression import unsubscribe

router = Router("unsubscribe")

# A form post is a few dozen bytes; anything larger is not one.
BODY_LIMIT_BYTES = 16 * 1024
TOKEN_MAX_CHARS = 1024
ONE_CLICK = ("List-Unsubscribe", "One-Click")
CONFIRM = ("confirm", "yes")
_FORM = "application/x-www-form-urlencoded"
_MULTIPART = "multipart/form-data"
# The URL holds the token: never send it on as a Referer, never cache or frame the page.
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "form-action 'self'; frame-ancestors 'none'",
}
TOKEN_PARAMETER = {
    "name": "token",
    "in": "path",
    "required": True,
    "description": "the signed token of an email's List-Unsubscribe URL",
    "schema": {"type": "string", "minLength": 1, "maxLength": TOKEN_MAX_CHARS},
}
ONE_CLICK_BODY: dict[str, Any] = {
    "type": "object",
    "description": "RFC 8058: List-Unsubscribe=One-Click (or the confirmation form's confirm=yes)",
    "properties": {
        "List-Unsubscribe": {"type": "string", "enum": ["One-Click"]},
        "confirm": {"type": "string", "enum": ["yes"]},
    },
}
UNSUBSCRIBED: dict[str, Any] = {
    "type": "object",
    "required": ["address", "unsubscribed"],
    "properties": {"address": {"type": "string"}, "unsubscribed": {"type": "boolean"}},
}
_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;"
    "color:#222}button{font-size:1rem;padding:.5rem 1.25rem;cursor:pointer}"
)


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    document = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f'<meta name="robots" content="noindex"><title>{html.escape(title)}</title>'
        f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )
    return HTMLResponse(document, status_code=status, headers=PAGE_HEADERS)


def _address(request: Request) -> tuple[str, str]:
    """The path's token and the address it unsubscribes; InvalidToken when forged."""
    token: str = request.path_params["token"]
    if len(token) > TOKEN_MAX_CHARS:
        raise InvalidToken("unsubscribe token: malformed")
    return token, read_token(service_of(request).secret_key, token)


def _invalid(exc: InvalidToken) -> str:
    return f"{exc} — this unsubscribe link is not valid; use the link of a recent email"


@router.route(
    "GET",
    "/v1/unsubscribe/{token}",
    role=Role.PUBLIC,
    summary="The confirmation page of an unsubscribe link (changes nothing; its form POSTs)",
    parameters=[TOKEN_PARAMETER],
    media_type="text/html",
    responses={
        200: ("an HTML page with a form that POSTs to this URL", None),
        400: ("an HTML page: the link is malformed or forged", None),
    },
)
async def confirm_page(request: Request) -> Response:
    try:
        _token, address = _address(request)
    except InvalidToken as exc:
        return _page("Invalid unsubscribe link", f"<p>{html.escape(_invalid(exc))}</p>", 400)
    return _page(
        "Unsubscribe",
        f"<p>Stop sending email to <strong>{html.escape(address)}</strong>?</p>"
        '<form method="post"><input type="hidden" name="confirm" value="yes">'
        '<button type="submit">Unsubscribe</button></form>',
    )


def _form(raw: bytes, content_type: str) -> dict[str, list[str]]:
    media = content_type.partition(";")[0].strip().lower()
    if media == _MULTIPART:
        # Some clients send the one-click body as multipart; its field is all that matters.
        text = raw.decode("utf-8", "replace")
        found: dict[str, list[str]] = {}
        for name, value in (ONE_CLICK, CONFIRM):
            if f'name="{name}"' in text and value in text:
                found[name] = [value]
        return found
    try:
        return parse_qs(raw.decode("utf-8"), keep_blank_values=True, max_num_fields=20)
    except (UnicodeDecodeError, ValueError):
        raise ApiError(400, "body: not a form (application/x-www-form-urlencoded)") from None


@router.route(
    "POST",
    "/v1/unsubscribe/{token}",
    role=Role.PUBLIC,
    summary="Unsubscribe: RFC 8058 one-click (List-Unsubscribe=One-Click) or the confirmation "
    "form; suppresses the address. Answers HTML to a browser, JSON otherwise",
    parameters=[TOKEN_PARAMETER],
    body=ONE_CLICK_BODY,
    body_media_type=_FORM,
    responses={200: ("unsubscribed", UNSUBSCRIBED), **errors(400, 413)},
)
async def unsubscribe_post(request: Request) -> Response:
    service = service_of(request)
    browser = "text/html" in request.headers.get("accept", "")
    try:
        token, _ = _address(request)
    except InvalidToken as exc:
        if browser:
            return _page("Invalid unsubscribe link", f"<p>{html.escape(_invalid(exc))}</p>", 400)
        raise ApiError(400, _invalid(exc)) from None
    raw = await read_body(request, BODY_LIMIT_BYTES)
    form = _form(raw, request.headers.get("content-type", ""))
    if not any(value in form.get(name, ()) for name, value in (ONE_CLICK, CONFIRM)):
        raise ApiError(400, "body: must be List-Unsubscribe=One-Click (RFC 8058)")
    address, _ = await unsubscribe(service.pool, service.secret_key, token)
    if browser:
        return _page(
            "Unsubscribed",
            f"<p><strong>{html.escape(address)}</strong> will get no more of these emails.</p>",
        )
    return JSONResponse({"address": address, "unsubscribed": True}, headers=PAGE_HEADERS)
