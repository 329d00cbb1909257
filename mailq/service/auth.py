"""Bearer tokens: client, admin and viewer, several of each so they can be rotated.

Tokens come from MAILQ_API_TOKEN / MAILQ_ADMIN_TOKEN / MAILQ_VIEWER_TOKEN (comma-separated). A
kind left unset is generated once into `$MAILQ_HOME/tokens` (mode 0600; a file from before the
viewer token gets one appended); every process of the service, and every later start, reads
the same file. A viewer token reads what an admin token reads (the dashboard and every
GET /v1/...) and changes nothing. Only SHA-256 digests of the tokens are kept in memory past
start-up, compared in constant time; a token is never logged nor put in an error body.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from starlette.requests import Request

from mailq.errors import ConfigError
from mailq.service.api import Role
from mailq.service.errors import ApiError
from mailq.settings import Settings

logger = logging.getLogger(__name__)

TOKEN_FILE = "tokens"
CLIENT_VARIABLE = "MAILQ_API_TOKEN"
ADMIN_VARIABLE = "MAILQ_ADMIN_TOKEN"
VIEWER_VARIABLE = "MAILQ_VIEWER_TOKEN"
# Prefixes make a leaked token recognisable to secret scanners (and to people).
CLIENT_PREFIX = "mqc_"
ADMIN_PREFIX = "mqa_"
VIEWER_PREFIX = "mqv_"
READ_METHODS = frozenset({"GET", "HEAD"})
TOKEN_BYTES = 32
MAX_TOKEN_CHARS = 512
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="mailq"'}


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the role their token grants, and `scope`, a digest of the token that
    keys their Idempotency-Keys (so two callers never see each other's)."""

    role: Role
    scope: str
    # A viewer: reads what an admin reads, changes nothing.
    read_only: bool = False


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


@dataclass(frozen=True, slots=True)
class Tokens:
    client: tuple[bytes, ...]
    admin: tuple[bytes, ...]
    viewer: tuple[bytes, ...] = ()

    @classmethod
    def of(
        cls, client: tuple[str, ...], admin: tuple[str, ...], viewer: tuple[str, ...] = ()
    ) -> Tokens:
        if not client or not admin:
            raise ConfigError("at least one client and one admin token are needed")
        if set(client) & set(admin):
            raise ConfigError(f"a token is both in {CLIENT_VARIABLE} and {ADMIN_VARIABLE}")
        if set(viewer) & (set(client) | set(admin)):
            raise ConfigError(f"a token in {VIEWER_VARIABLE} is also a client or admin token")
        return cls(
            tuple(map(_digest, client)), tuple(map(_digest, admin)), tuple(map(_digest, viewer))
        )

    def identify(self, token: str) -> Principal | None:
        """The principal a presented token stands for. Every known token is compared, each
        in constant time (digests of equal length), so timing tells nothing of which nor
        how much of a token matched."""
        presented = _digest(token)
        role: Role | None = None
        read_only = False
        for known in self.client:
            if hmac.compare_digest(presented, known):
                role = Role.CLIENT
        for known in self.admin:
            if hmac.compare_digest(presented, known):
                role = Role.ADMIN
        for known in self.viewer:
            if hmac.compare_digest(presented, known):
                role, read_only = Role.ADMIN, True
        return None if role is None else Principal(role, presented.hex(), read_only)

    def knows(self, scope: str) -> bool:
        """Whether a token of this scope (Principal.scope) is still configured: a dashboard
        session ends when its token is removed."""
        try:
            presented = bytes.fromhex(scope)
        except ValueError:
            return False
        found = False
        for known in (*self.client, *self.admin, *self.viewer):
            if len(presented) == len(known) and hmac.compare_digest(presented, known):
                found = True
        return found


def authorize(request: Request, tokens: Tokens, needed: Role) -> Principal | None:
    """Check the request's bearer token against `needed`: ApiError 401 or 403 otherwise."""
    if needed is Role.PUBLIC:
        return None
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    principal = None
    if scheme.lower() == "bearer" and 0 < len(token) <= MAX_TOKEN_CHARS:
        principal = tokens.identify(token)
    if principal is None:
        raise ApiError(401, "a valid bearer token is required (Authorization: Bearer …)", CHALLENGE)
    if principal.read_only and request.method not in READ_METHODS:
        raise ApiError(403, "a viewer token reads and changes nothing: this needs an admin token")
    if principal.role < needed:
        raise ApiError(403, "this endpoint needs an admin token")
    return principal


# -- configured or generated ---------------------------------------------------------------


def load_tokens(settings: Settings) -> Tokens:
    """The tokens of this service: from the settings, and for a kind left unset, from the
    generated token file (created on first use)."""
    client, admin, viewer = settings.api_tokens, settings.admin_tokens, settings.viewer_tokens
    if not client or not admin or not viewer:
        stored = read_or_create_token_file(settings.home)
        client = client or stored[CLIENT_VARIABLE]
        admin = admin or stored[ADMIN_VARIABLE]
        viewer = viewer or stored[VIEWER_VARIABLE]
    return Tokens.of(client, admin, viewer)


def token_file(home: Path) -> Path:
    return home / TOKEN_FILE


def read_or_create_token_file(home: Path) -> dict[str, tuple[str, ...]]:
    """Read `$MAILQ_HOME/tokens`, creating it first if absent. Safe when several processes
    start at once: the file is written whole under a temporary name and linked into place
    (os.link fails if the name exists), so exactly one process's tokens win and nobody
    reads a half-written file."""
    path = token_file(home)
    if not path.exists():
        _create_token_file(path)
    values = _read_token_file(path)
    if not values[VIEWER_VARIABLE]:
        _append_viewer_token(path)
        values = _read_token_file(path)
    return values


def _create_token_file(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    text = (
        "# mailq bearer tokens, generated once; every mailq process reads them.\n"
        "# Keep this file secret. Several tokens of a kind may be listed, comma-separated.\n"
        f"{CLIENT_VARIABLE}={CLIENT_PREFIX}{secrets.token_urlsafe(TOKEN_BYTES)}\n"
        f"{ADMIN_VARIABLE}={ADMIN_PREFIX}{secrets.token_urlsafe(TOKEN_BYTES)}\n"
        f"{VIEWER_VARIABLE}={VIEWER_PREFIX}{secrets.token_urlsafe(TOKEN_BYTES)}\n"
    )
    temporary = path.with_name(f".{TOKEN_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        try:
            os.link(temporary, path)
            logger.warning(
                "no MAILQ_API_TOKEN/MAILQ_ADMIN_TOKEN set: generated tokens into %s",
                path,
                extra={"action": "tokens_generated"},
            )
        except FileExistsError:
            pass  # another process won the race; its tokens are the ones
    finally:
        temporary.unlink(missing_ok=True)


def _append_viewer_token(path: Path) -> None:
    """A token file from before the viewer token: append one, under an exclusive lock so
    that processes starting together append exactly one (the others see it when they get
    the lock)."""
    with open(path, "r+", encoding="utf-8") as stream:
        fcntl.flock(stream, fcntl.LOCK_EX)
        text = stream.read()
        if any(line.strip().startswith(f"{VIEWER_VARIABLE}=") for line in text.splitlines()):
            return
        newline = "" if text.endswith("\n") or not text else "\n"
        stream.write(
            f"{newline}{VIEWER_VARIABLE}={VIEWER_PREFIX}{secrets.token_urlsafe(TOKEN_BYTES)}\n"
        )
        stream.flush()
        os.fsync(stream.fileno())
    logger.warning(
        "added a MAILQ_VIEWER_TOKEN (read-only) to %s",
        path,
        extra={"action": "tokens_generated"},
    )


def _read_token_file(path: Path) -> dict[str, tuple[str, ...]]:
    mode = path.stat().st_mode
    if mode & 0o077:
        logger.warning(
            "%s is readable by other users (mode %o); chmod 600 it",
            path,
            mode & 0o777,
            extra={"action": "token_file_mode"},
        )
    values: dict[str, tuple[str, ...]] = {
        CLIENT_VARIABLE: (),
        ADMIN_VARIABLE: (),
        VIEWER_VARIABLE: (),
    }
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, equals, raw = line.partition("=")
        if not equals or name.strip() not in values:
            raise ConfigError(f"{path}: unexpected line (expected {CLIENT_VARIABLE}=… lines)")
        values[name.strip()] = tuple(t.strip() for t in raw.split(",") if t.strip())
    for name, tokens in values.items():
        if not tokens and name != VIEWER_VARIABLE:  # appended by the caller when missing
            raise ConfigError(f"{path}: no {name} in the file; delete it to generate new tokens")
    return values


def principal_of(request: Request) -> Principal:
    """The caller of an endpoint that needs a token (set by the route guard in app.py)."""
    principal = getattr(request.state, "principal", None)
    if not isinstance(principal, Principal):
        raise ApiError(401, "a valid bearer token is required (Authorization: Bearer …)", CHALLENGE)
    return principal
