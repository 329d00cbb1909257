"""Signing in with an admin or viewer token, and out."""

from __future__ import annotations

import secrets

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from mailq.service.auth import MAX_TOKEN_CHARS
from mailq.service.dashboard import session as sessions
from mailq.service.dashboard.guard import forbidden, read_form, safe_next
from mailq.service.dashboard.render import html
from mailq.service.state import Service, service_of


def _form(
    service: Service, next_page: str, message: str | None = None, status: int = 200
) -> Response:
    nonce = secrets.token_urlsafe(16)
    response = html(
        "login.html",
        {
            "csrf": sessions.login_csrf_token(service.secret_key, nonce),
            "next": next_page,
            "message": message,
        },
        status=status,
    )
    sessions.set_cookie(response, service, sessions.LOGIN_COOKIE, nonce, sessions.LOGIN_FORM_S)
    return response


async def login_form(request: Request) -> Response:
    service = service_of(request)
    next_page = safe_next(request.query_params.get("next"))
    if sessions.read(request, service) is not None:
        return RedirectResponse(next_page, status_code=303)
    return _form(service, next_page)


async def login(request: Request) -> Response:
    service = service_of(request)
    try:
        sessions.check_same_origin(request, service)
        form = await read_form(request)
        nonce = request.cookies.get(sessions.LOGIN_COOKIE, "")
        if not nonce:
            raise sessions.Forbidden("the sign-in form has expired: reload it")
        sessions.check_csrf(form.get("csrf"), sessions.login_csrf_token(service.secret_key, nonce))
    except sessions.Forbidden as refused:
        return forbidden(request, str(refused))
    next_page = safe_next(form.get("next"))
    token = form.get("token").strip()
    principal = service.tokens.identify(token) if 0 < len(token) <= MAX_TOKEN_CHARS else None
    if principal is None or (principal.role.name != "ADMIN"):
        message = "That is not an admin or viewer token of this service."
        return _form(service, next_page, message, status=401)
    role = sessions.VIEWER if principal.read_only else sessions.ADMIN
    response = RedirectResponse(next_page, status_code=303)
    cookie = sessions.issue(service.secret_key, role, principal.scope)
    sessions.set_cookie(response, service, sessions.COOKIE, cookie, sessions.SESSION_S)
    sessions.clear_cookie(response, service, sessions.LOGIN_COOKIE)
    return response


async def logout(request: Request) -> Response:
    service = service_of(request)
    try:
        sessions.check_same_origin(request, service)
        form = await read_form(request)
        current = sessions.read(request, service)
        if current is not None:
            expected = sessions.csrf_token(service.secret_key, current)
            sessions.check_csrf(form.get("csrf"), expected)
    except sessions.Forbidden as refused:
        return forbidden(request, str(refused))
    response = RedirectResponse("/dashboard/login", status_code=303)
    sessions.clear_cookie(response, service, sessions.COOKIE)
    return response
