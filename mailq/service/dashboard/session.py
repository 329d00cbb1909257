"""Dashboard sessions: a signed cookie bound to the token it was opened with, its CSRF token,
and the same-origin check every change passes.

The cookie holds the role, a binding to the token (a digest of its digest: the token is not
in it and cannot be found from it), when it was issued and a random nonce, signed with an
HMAC key derived from MAILQ_SECRET_KEY. It is HttpOnly, SameSite=Strict, Secure when
MAILQ_PUBLIC_URL is https, valid 12 hours. Every request looks the binding up among the
tokens configured now, so removing a token from the settings ends its sessions, and a token
moved from admin to viewer has a viewer's session from then on.

A change (any POST, the login form's included) needs a CSRF token derived from the session's
nonce (the login form: from a nonce cookie set with the form) and a request from the
dashboard's own origin: `Sec-Fetch-Site: same-origin` when the browser sends it, and an
`Origin` equal to the service's own; a request with neither is refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import orjson
from starlette.requests import Request
from starlette.responses import Response

from mailq.service.auth import Tokens
from mailq.service.state import Service

COOKIE = "mailq_session"
LOGIN_COOKIE = "mailq_login"
FLASH_COOKIE = "mailq_flash"
PATH = "/dashboard"
SESSION_S = 12 * 3600
LOGIN_FORM_S = 3600
FLASH_S = 60
ADMIN = "admin"
VIEWER = "viewer"
_BINDING_BYTES = 16


class Forbidden(Exception):
    """A change the dashboard refuses (403): no CSRF token, another origin, or a viewer."""


@dataclass(frozen=True, slots=True)
class Session:
    role: str  # admin or viewer
    binding: str  # hex
    issued_at: float
    nonce: str

    @property
    def is_admin(self) -> bool:
        return self.role == ADMIN

    @property
    def actor(self) -> str:
        """Who did it, for the audit log: the role and the token's fingerprint."""
        return f"{self.role} {self.binding[:8]}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _key(secret: bytes, purpose: str) -> bytes:
    return hmac.new(secret, b"mailq-dashboard:" + purpose.encode(), hashlib.sha256).digest()


def _mac(secret: bytes, purpose: str, data: bytes) -> bytes:
    return hmac.new(_key(secret, purpose), data, hashlib.sha256).digest()


def binding_of(scope: str) -> str:
    """The cookie's stand-in for a token (Principal.scope is its SHA-256, in hex)."""
    return (
        hashlib.sha256(b"mailq-session-binding:" + bytes.fromhex(scope))
        .digest()[:_BINDING_BYTES]
        .hex()
    )


def _role_of(tokens: Tokens, binding: str) -> str | None:
    """The role of the configured token the binding stands for, None if none is (every
    token is compared, in constant time)."""
    role = None
    for digests, name in ((tokens.admin, ADMIN), (tokens.viewer, VIEWER)):
        for digest in digests:
            if hmac.compare_digest(binding_of(digest.hex()), binding):
                role = name
    return role


def issue(secret: bytes, role: str, scope: str, now: float | None = None) -> str:
    payload = {
        "r": role,
        "b": binding_of(scope),
        "t": int(time.time() if now is None else now),
        "n": secrets.token_urlsafe(16),
    }
    data = orjson.dumps(payload)
    return f"{_b64(data)}.{_b64(_mac(secret, 'session', data))}"


def read(request: Request, service: Service, now: float | None = None) -> Session | None:
    """The request's valid session, or None."""
    raw = request.cookies.get(COOKIE)
    if not raw or len(raw) > 1024 or raw.count(".") != 1:
        return None
    body, signature = raw.split(".")
    try:
        data, mac = _unb64(body), _unb64(signature)
    except (ValueError, TypeError):
        return None
    if not hmac.compare_digest(mac, _mac(service.secret_key, "session", data)):
        return None
    try:
        payload = orjson.loads(data)
        binding, issued, nonce = str(payload["b"]), float(payload["t"]), str(payload["n"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None
    moment = time.time() if now is None else now
    if not 0 <= moment - issued <= SESSION_S:
        return None
    role = _role_of(service.tokens, binding)
    if role is None:
        return None  # the token was removed: its sessions end
    return Session(role, binding, issued, nonce)


def csrf_token(secret: bytes, session: Session) -> str:
    return _b64(_mac(secret, "csrf", session.nonce.encode())[:16])


def login_csrf_token(secret: bytes, nonce: str) -> str:
    return _b64(_mac(secret, "login", nonce.encode())[:16])


def _secure(service: Service) -> bool:
    return service.settings.public_url.lower().startswith("https://")


def set_cookie(response: Response, service: Service, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=PATH,
        secure=_secure(service),
        httponly=True,
        samesite="strict",
    )


def clear_cookie(response: Response, service: Service, name: str) -> None:
    response.delete_cookie(
        name, path=PATH, secure=_secure(service), httponly=True, samesite="strict"
    )


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def check_same_origin(request: Request, service: Service) -> None:
    """Forbidden unless the request comes from a page of this dashboard."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site != "same-origin":
        raise Forbidden(f"a change must come from the dashboard's own pages (not {site[:20]})")
    origin = request.headers.get("origin")
    if origin is None:
        if site is None:
            raise Forbidden("a change must come from a browser page of the dashboard (no Origin)")
        return
    allowed = {_origin(str(request.url)), _origin(service.settings.public_url)}
    if origin.lower() not in allowed:
        raise Forbidden("a change must come from the dashboard's own origin")


def check_csrf(presented: str | None, expected: str) -> None:
    if not presented or not hmac.compare_digest(presented.encode(), expected.encode()):
        raise Forbidden("the form is missing its CSRF token, or it is stale: reload the page")


def seal(secret: bytes, purpose: str, data: bytes) -> str:
    """`data`, signed for `purpose` (the flash message after a change)."""
    return f"{_b64(data)}.{_b64(_mac(secret, purpose, data))}"


def unseal(secret: bytes, purpose: str, raw: str) -> bytes | None:
    if len(raw) > 4096 or raw.count(".") != 1:
        return None
    body, signature = raw.split(".")
    try:
        data, mac = _unb64(body), _unb64(signature)
    except (ValueError, TypeError):
        return None
    return data if hmac.compare_digest(mac, _mac(secret, purpose, data)) else None
