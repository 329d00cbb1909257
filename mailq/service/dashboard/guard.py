"""What every dashboard endpoint goes through: a page needs a session (else the login form),
a change needs an admin session, its CSRF token and the same origin (else 403, nothing
changed); forms are read here, and a change's outcome is shown once on the next page."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote

import asyncpg
import orjson
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from mailq.db.audit_log import audit_log_add
from mailq.errors import MailqError
from mailq.service.dashboard import session as sessions
from mailq.service.dashboard import timing
from mailq.service.dashboard.render import html
from mailq.service.state import Service, service_of

logger = logging.getLogger(__name__)

FORM_LIMIT_BYTES = 10 * 1024 * 1024
FORM_FIELDS_MAX = 20_000
NAV = (
    ("overview", "/dashboard", "Overview"),
    ("emails", "/dashboard/emails", "Emails"),
    ("failures", "/dashboard/failures", "Failures"),
    ("campaigns", "/dashboard/campaigns", "Campaigns"),
    ("kinds", "/dashboard/kinds", "Kinds"),
    ("workers", "/dashboard/workers", "Workers"),
    ("suppressions", "/dashboard/suppressions", "Suppressions"),
    ("unknown", "/dashboard/unknown", "Unknown"),
)


class Form:
    """An application/x-www-form-urlencoded body: repeated names keep every value."""

    def __init__(self, pairs: Sequence[tuple[str, str]]) -> None:
        self.pairs = list(pairs)

    def get(self, name: str, default: str = "") -> str:
        return next((v for k, v in self.pairs if k == name), default)

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.pairs if k == name]


async def read_form(request: Request) -> Form:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > FORM_LIMIT_BYTES:
            raise sessions.Forbidden("the form is larger than 10 MB")
    try:
        pairs = parse_qsl(
            body.decode("utf-8"), keep_blank_values=True, max_num_fields=FORM_FIELDS_MAX
        )
    except (UnicodeDecodeError, ValueError):
        pairs = []
    return Form(pairs)


@dataclass(frozen=True, slots=True)
class Context:
    """One request to a dashboard endpoint, with its session."""

    request: Request
    service: Service
    session: sessions.Session

    @property
    def pool(self) -> asyncpg.Pool:
        return self.service.pool

    def page(self, template: str, section: str, status: int = 200, **values: Any) -> Response:
        flash = _read_flash(self.request, self.service)
        response = html(
            template,
            {
                "session": self.session,
                "csrf": sessions.csrf_token(self.service.secret_key, self.session),
                "nav": NAV,
                "section": section,
                "can_change": self.session.is_admin,
                "flash": flash,
                "path": self.request.url.path,
                "query": self.request.query_params,
                **values,
            },
            status=status,
        )
        if flash is not None:
            sessions.clear_cookie(response, self.service, sessions.FLASH_COOKIE)
        return response

    async def record(
        self,
        conn: asyncpg.Connection,
        action: str,
        target_type: str,
        target: str,
        *,
        email_ids: Sequence[int] | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        await audit_log_add(
            conn,
            self.session.actor,
            action,
            target_type,
            target,
            email_ids=email_ids,
            detail=detail,
        )
        logger.info(
            "dashboard action %s on %s %s",
            action,
            target_type,
            target,
            extra={"action": "dashboard_" + action.replace(".", "_"), "actor": self.session.actor},
        )


def _read_flash(request: Request, service: Service) -> dict[str, str] | None:
    raw = request.cookies.get(sessions.FLASH_COOKIE)
    if not raw:
        return None
    value = sessions.unseal(service.secret_key, "flash", raw)
    if value is None:
        return None
    try:
        data = orjson.loads(value)
        return {"kind": str(data["k"]), "text": str(data["t"])}
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None


def done(ctx: Context, to: str, text: str, kind: str = "ok") -> Response:
    """After a change: back to a page (303), which shows `text` once."""
    response = RedirectResponse(to, status_code=303)
    sealed = sessions.seal(ctx.service.secret_key, "flash", orjson.dumps({"k": kind, "t": text}))
    sessions.set_cookie(response, ctx.service, sessions.FLASH_COOKIE, sealed, sessions.FLASH_S)
    return response


def login_redirect(request: Request) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/dashboard/login?next={quote(target, safe='/')}", status_code=303)


Endpoint = Callable[[Context], Awaitable[Response]]


def page(endpoint: Endpoint) -> Callable[[Request], Awaitable[Response]]:
    """A page (GET): any session; without one, the login form."""

    @functools.wraps(endpoint)
    async def handle(request: Request) -> Response:
        began = time.perf_counter()
        service = service_of(request)
        session = sessions.read(request, service)
        if session is None:
            return login_redirect(request)
        with timing.measuring() as spent:
            response = await endpoint(Context(request, service, session))
            # The server's time for the page, queries and rendering, and of it the time its
            # queries took (what the benchmark reads).
            elapsed_ms = (time.perf_counter() - began) * 1000
            db_ms = await timing.settled(spent) * 1000
        response.headers["Server-Timing"] = f"page;dur={elapsed_ms:.2f}, db;dur={db_ms:.2f}"
        return response

    return handle


def action(endpoint: Callable[[Context, Form], Awaitable[Response]]) -> Callable[..., Any]:
    """A change (POST): an admin session, the same origin and the CSRF token, else 403 with
    nothing changed. mailq's refusals (NotAllowed, ...) come back as a message on the page."""

    @functools.wraps(endpoint)
    async def handle(request: Request) -> Response:
        service = service_of(request)
        session = sessions.read(request, service)
        try:
            sessions.check_same_origin(request, service)
            if session is None:
                raise sessions.Forbidden("sign in first: this change needs a session")
            form = await read_form(request)
            sessions.check_csrf(form.get("csrf"), sessions.csrf_token(service.secret_key, session))
            if not session.is_admin:
                raise sessions.Forbidden("a viewer token reads and changes nothing")
        except sessions.Forbidden as refused:
            return forbidden(request, str(refused))
        ctx = Context(request, service, session)
        try:
            return await endpoint(ctx, form)
        except MailqError as refused:
            back = form.get("back") or request.headers.get("referer") or "/dashboard"
            return done(ctx, safe_next(back), str(refused), kind="error")

    return handle


def forbidden(request: Request, message: str) -> Response:
    logger.warning(
        "dashboard refused %s %s: %s",
        request.method,
        request.url.path,
        message,
        extra={"action": "dashboard_forbidden"},
    )
    return html("error.html", {"title": "Not allowed", "message": message}, status=403)


def not_found(ctx: Context, message: str) -> Response:
    return ctx.page("error.html", "", status=404, title="Not found", message=message)


def safe_next(target: str | None) -> str:
    """Only a path of the dashboard: never another host (an open redirect)."""
    if not target:
        return "/dashboard"
    if "://" in target:
        from urllib.parse import urlsplit

        parts = urlsplit(target)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
    if not target.startswith("/dashboard") or target.startswith("//") or "\\" in target:
        return "/dashboard"
    return target
