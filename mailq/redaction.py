"""Secrets out of what mailq prints and logs.

The URLs mailq is configured with carry credentials in their userinfo
(`smtp://user:password@relay`, `postgresql://app:password@db/mail`, `postmark://TOKEN@`):
every line mailq prints or logs shows them as `scheme://***@host`, the whole userinfo
hidden (a user name can be a token too). libpq's `key=value` form hides its `password=`.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

HIDDEN = "***"
# scheme://userinfo@ anywhere in a text; the userinfo stops at the first '@' before a '/'.
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@'\"]*@")
# password=... in a libpq keyword DSN or a URL's query (?password=...).
_PASSWORD = re.compile(r"(?i)\b(password|passwd|api_key|token|secret)=([^\s&'\"]+)")


def redact(text: str) -> str:
    """`text` with the userinfo of every URL in it, and every `password=`, hidden."""
    if "@" not in text and "=" not in text:
        return text
    text = _USERINFO.sub(lambda m: f"{m.group(1)}{HIDDEN}@", text)
    return _PASSWORD.sub(lambda m: f"{m.group(1)}={HIDDEN}", text)


def redact_url(url: str) -> str:
    """One URL with its userinfo hidden (and a password in its query)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact(url)
    if parts.username is None and parts.password is None and "@" not in parts.netloc:
        return redact(url)
    host = parts.netloc.rpartition("@")[2]
    return redact(urlunsplit(parts._replace(netloc=f"{HIDDEN}@{host}")))
