"""The MAILQ_BACKEND URL of an ESP: its credentials, host and options, checked at start.

Errors never repeat the URL: it carries the API key.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlsplit

from mailq.errors import BackendError


@dataclass(frozen=True, slots=True)
class EspTarget:
    scheme: str
    # The part before `@` (API key or server token), percent-decoded.
    key: str | None
    # The part after `@`: the SES region, the Mailgun domain.
    host: str | None
    options: Mapping[str, str]
    # `?endpoint=URL`: a base URL that replaces the provider's (regions, proxies, tests).
    endpoint: str | None

    @classmethod
    def from_url(cls, url: str, allowed: Collection[str] = ()) -> EspTarget:
        """Parse `url`; an option besides `endpoint` and `allowed` is a BackendError."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if parts.path not in ("", "/") or parts.fragment:
            raise BackendError(f"MAILQ_BACKEND {scheme}://: no path or fragment is expected")
        options: dict[str, str] = {}
        for name, value in parse_qsl(parts.query, keep_blank_values=True):
            if name != "endpoint" and name not in allowed:
                known = ", ".join(sorted({"endpoint", *allowed}))
                raise BackendError(
                    f"MAILQ_BACKEND {scheme}://: unknown option {name!r}; it takes {known}"
                )
            options[name] = value
        # netloc is `key@host`; the key itself may hold ':' (kept, not read as a password).
        key, at, host = parts.netloc.rpartition("@")
        if not at:
            key, host = "", parts.netloc
        endpoint = options.pop("endpoint", None)
        return cls(
            scheme=scheme,
            key=unquote(key) or None,
            host=unquote(host) or None,
            options=options,
            endpoint=base_url(scheme, endpoint) if endpoint is not None else None,
        )

    def require_key(self, what: str) -> str:
        if not self.key:
            raise BackendError(
                f"MAILQ_BACKEND {self.scheme}://: the {what} goes before the '@' "
                f"({self.scheme}://{what.upper().replace(' ', '_')}@...)"
            )
        return self.key


def base_url(scheme: str, value: str) -> str:
    """A checked `endpoint=` value: scheme, host, port and an optional path prefix."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BackendError(
            f"MAILQ_BACKEND {scheme}://: endpoint= must be an http(s) base URL, "
            "percent-encoded (e.g. endpoint=https%3A%2F%2Fproxy.example%2Fses)"
        )
    if parts.query or parts.fragment or parts.username or parts.password:
        raise BackendError(
            f"MAILQ_BACKEND {scheme}://: endpoint= is a base URL without query, fragment "
            "or credentials"
        )
    try:
        parts.port  # noqa: B018 - validates the port
    except ValueError:
        raise BackendError(f"MAILQ_BACKEND {scheme}://: endpoint= has a bad port") from None
    return value.rstrip("/")
