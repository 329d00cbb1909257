"""VERP envelope senders: `b-<token>@MAILQ_BOUNCE_DOMAIN`, one per email, so that any bounce
names the email it is about.

The token is the email id (8 bytes, big-endian) followed by an HMAC-SHA256 of it truncated to
80 bits, in lowercase hex: 36 characters, so the local part `b-<token>` is 38 octets (RFC 5321
allows 64). Hex rather than base32 because it is several times faster in Python and needs no
padding; lowercase because some MTAs fold the case of local parts (reading accepts either
case). The id is readable by anyone; only the signature is secret. The HMAC is keyed with
MAILQ_SECRET_KEY; when it lists several keys separated by commas, the first signs and every
one verifies, so a key can be rotated without losing the bounces of mail already sent. A token
nobody signed (forged, altered, or signed with a key since removed) raises `ForgedVerpToken`.

Making an address costs one HMAC (about 5 µs on a slow shared CPU), cheap enough for every
email sent; reading one costs one HMAC per key.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass

from mailq.bounces.errors import ForgedVerpToken, NotVerpAddress
from mailq.errors import ConfigError

PREFIX = "b-"
ID_BYTES = 8
MAC_BYTES = 10
TOKEN_LENGTH = 2 * (ID_BYTES + MAC_BYTES)  # hex
MAX_LOCAL_PART = 64  # RFC 5321 §4.5.3.1.1
_CONTEXT = b"mailq-verp\x00"
_TOKEN = re.compile(rf"^[0-9a-f]{{{TOKEN_LENGTH}}}$")
_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
_DOMAIN = re.compile(rf"^(?=.{{1,253}}$)({_LABEL}\.)*{_LABEL}$")
_MAX_ID = 2**63 - 1  # a bigint


def split_keys(secret: str | bytes) -> tuple[bytes, ...]:
    """The keys of a MAILQ_SECRET_KEY value: comma-separated, blanks around them ignored."""
    raw = secret.encode("utf-8") if isinstance(secret, str) else secret
    return tuple(part.strip() for part in raw.split(b",") if part.strip())


@dataclass(frozen=True, slots=True)
class Verp:
    """Makes and reads the VERP addresses of one bounce domain. `keys[0]` signs."""

    domain: str
    keys: tuple[bytes, ...]

    def __post_init__(self) -> None:
        domain = self.domain.strip().rstrip(".").lower()
        if not _DOMAIN.match(domain):
            raise ConfigError(f"MAILQ_BOUNCE_DOMAIN: {self.domain!r} is not a domain name")
        object.__setattr__(self, "domain", domain)
        if not self.keys or not all(self.keys):
            raise ConfigError("MAILQ_SECRET_KEY: VERP addresses need at least one key")

    @classmethod
    def from_secret(cls, domain: str, secret: str | bytes) -> Verp:
        """From MAILQ_BOUNCE_DOMAIN and a MAILQ_SECRET_KEY value (several keys: `new,old`)."""
        return cls(domain, split_keys(secret))

    def _mac(self, key: bytes, id_bytes: bytes) -> bytes:
        return hmac.digest(key, _CONTEXT + id_bytes, "sha256")[:MAC_BYTES]

    def token(self, email_id: int) -> str:
        """The signed token naming `email_id`."""
        if isinstance(email_id, bool) or not isinstance(email_id, int):
            raise TypeError("email_id must be an int")
        if not 0 < email_id <= _MAX_ID:
            raise ValueError(f"email_id {email_id} is out of range")
        id_bytes = email_id.to_bytes(ID_BYTES, "big")
        raw = id_bytes + self._mac(self.keys[0], id_bytes)
        return raw.hex()

    def address(self, email_id: int) -> str:
        """The envelope sender (MAIL FROM) for `email_id`: `b-<token>@<domain>`."""
        return f"{PREFIX}{self.token(email_id)}@{self.domain}"

    def read_token(self, token: str) -> int:
        """The email id a token names; `ForgedVerpToken` if no key signed it."""
        token = token.lower()
        if not _TOKEN.match(token):
            raise ForgedVerpToken("VERP token: malformed")
        raw = bytes.fromhex(token)
        id_bytes, given = raw[:ID_BYTES], raw[ID_BYTES:]
        # Every key is tried (no early exit) so the time taken says nothing about which matched.
        matched = False
        for key in self.keys:
            matched |= hmac.compare_digest(given, self._mac(key, id_bytes))
        email_id = int.from_bytes(id_bytes, "big")
        if not matched or not 0 < email_id <= _MAX_ID:
            raise ForgedVerpToken("VERP token: the signature matches no MAILQ_SECRET_KEY key")
        return email_id

    def local_part(self, address: str) -> str | None:
        """The token of `address` when it has the shape `b-<...>@<domain>`, else None. Does
        not check the signature."""
        address = address.strip().strip("<>").strip()
        local, at, domain = address.rpartition("@")
        if not at or domain.rstrip(".").lower() != self.domain:
            return None
        if len(local) > MAX_LOCAL_PART or local[: len(PREFIX)].lower() != PREFIX:
            return None
        return local[len(PREFIX) :]

    def is_verp_address(self, address: str) -> bool:
        """The address has the VERP shape of this domain (signature not checked)."""
        return self.local_part(address) is not None

    def read_address(self, address: str) -> int:
        """The email id of a VERP address. `NotVerpAddress` for any other address (another
        domain, another local part), `ForgedVerpToken` for a token nobody here signed."""
        token = self.local_part(address)
        if token is None:
            raise NotVerpAddress(f"{address!r} is not a VERP address of {self.domain}")
        return self.read_token(token)

    def find_email_id(self, addresses: Sequence[str]) -> int | None:
        """The email id of the first address that is a valid VERP address; forged and foreign
        addresses are passed over."""
        for address in addresses:
            token = self.local_part(address)
            if token is None:
                continue
            try:
                return self.read_token(token)
            except ForgedVerpToken:
                continue
        return None
