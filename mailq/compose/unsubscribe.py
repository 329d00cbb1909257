"""Unsubscribe links: signed tokens and List-Unsubscribe headers (RFC 2369, RFC 8058).
Honouring a token (suppressing its address) is mailq.suppression.unsubscribe().

A token is `<address, base64url>.<HMAC-SHA256 of it, truncated to 128 bits>`, signed with
MAILQ_SECRET_KEY: it needs no database row, never expires, and only its signer can make
one. The HTTP service serves `GET|POST /v1/unsubscribe/{token}` and calls
`mailq.suppression.unsubscribe()`.

Campaign emails (kinds with `list_unsubscribe`) carry::

    List-Unsubscribe: <mailto:...?subject=unsubscribe>, <https://.../v1/unsubscribe/TOKEN>
    List-Unsubscribe-Post: List-Unsubscribe=One-Click

RFC 8058 requires the one-click URL to be HTTPS, so `List-Unsubscribe-Post` is only added
when MAILQ_PUBLIC_URL is https:// (a development URL like http://127.0.0.1:8000 still gets
the link, not the one-click promise). Receivers trust one-click only with a DKIM signature
that covers both headers: mailq.dkim signs them when [dkim] is configured.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from urllib.parse import quote

from mailq.errors import ConfigError, InvalidToken
from mailq.settings import Settings

SIGNATURE_BYTES = 16
SECRET_FILE = "secret_key"
PATH = "/v1/unsubscribe/"


def load_secret_key(settings: Settings) -> bytes:
    """MAILQ_SECRET_KEY, or the key generated once into $MAILQ_HOME/secret_key (mode 0600)
    and shared from then on by every process using that home."""
    if settings.secret_key:
        return settings.secret_key.encode("utf-8")
    path = settings.home / SECRET_FILE
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise ConfigError(f"cannot read {path} ({exc.strerror}): set MAILQ_SECRET_KEY") from None
    key = secrets.token_urlsafe(32).encode("ascii")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first: use theirs
        return path.read_bytes().strip()
    except OSError as exc:
        raise ConfigError(
            f"cannot create {path} ({exc.strerror}): set MAILQ_SECRET_KEY or MAILQ_HOME"
        ) from None
    with os.fdopen(fd, "wb") as out:
        out.write(key)
    return key


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(secret: bytes, address: str) -> bytes:
    digest = hmac.new(secret, b"mailq-unsubscribe:" + address.encode("utf-8"), hashlib.sha256)
    return digest.digest()[:SIGNATURE_BYTES]


def make_token(secret: bytes, address: str) -> str:
    """The token that unsubscribes `address` (compared without case)."""
    address = address.lower()
    return f"{_b64(address.encode('utf-8'))}.{_b64(_signature(secret, address))}"


def read_token(secret: bytes, token: str) -> str:
    """The address a token unsubscribes; InvalidToken when it is malformed or forged."""
    try:
        encoded, signature = token.split(".")
        address = _unb64(encoded).decode("utf-8")
        given = _unb64(signature)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidToken("unsubscribe token: malformed") from None
    if not address or not hmac.compare_digest(given, _signature(secret, address)):
        raise InvalidToken("unsubscribe token: the signature does not match")
    return address


@dataclass(frozen=True, slots=True)
class UnsubscribeLinks:
    """Builds the unsubscribe URL and headers of outgoing emails."""

    secret: bytes
    public_url: str
    mailto: str | None = None

    def url(self, address: str) -> str:
        return f"{self.public_url.rstrip('/')}{PATH}{make_token(self.secret, address)}"

    def headers(self, address: str, from_address: str) -> list[tuple[str, str]]:
        """List-Unsubscribe (mailto and URL) and, for an https URL, List-Unsubscribe-Post."""
        url = self.url(address)
        mailbox = self.mailto or from_address
        mailto = f"mailto:{quote(mailbox, safe='@')}?subject=unsubscribe"
        headers = [("List-Unsubscribe", f"<{mailto}>, <{url}>")]
        if url.startswith("https://"):
            headers.append(("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"))
        return headers
