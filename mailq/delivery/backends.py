"""The backend a MAILQ_BACKEND URL names."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from urllib.parse import unquote, urlsplit

from mailq.delivery.esp import ESP_SCHEMES, esp_sender_from_url
from mailq.delivery.local import ConsoleSender, FileSender, NullSender
from mailq.delivery.replies import BUILTIN_QUIRKS, Quirk
from mailq.delivery.sender import Sender
from mailq.delivery.smtp import SmtpSender, SmtpTarget
from mailq.errors import BackendError
from mailq.redaction import redact_url


def sender_from_url(
    url: str,
    *,
    connections: int = 4,
    connect_timeout_s: float = 10.0,
    reply_timeout_s: float = 120.0,
    quirks: Sequence[Quirk] | None = None,
    helo_name: str | None = None,
) -> Sender:
    """The backend a MAILQ_BACKEND URL names; BackendError for a malformed one."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise BackendError(f"MAILQ_BACKEND {redact_url(url)!r}: not a URL ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme in {"smtp", "smtps"}:
        return SmtpSender(
            SmtpTarget.from_url(url),
            connections=connections,
            connect_timeout_s=connect_timeout_s,
            reply_timeout_s=reply_timeout_s,
            quirks=BUILTIN_QUIRKS if quirks is None else quirks,
            helo_name=helo_name,
        )
    if scheme in ESP_SCHEMES:
        return esp_sender_from_url(
            url,
            connections=connections,
            connect_timeout_s=connect_timeout_s,
            reply_timeout_s=reply_timeout_s,
        )
    if scheme == "file":
        if parts.netloc not in {"", "localhost"} or not parts.path:
            raise BackendError(
                f"MAILQ_BACKEND {redact_url(url)!r}: use file:///absolute/path/to/outbox"
            )
        return FileSender(Path(unquote(parts.path)))
    if scheme == "console":
        return ConsoleSender()
    if scheme == "null":
        return NullSender()
    raise BackendError(
        f"MAILQ_BACKEND: unknown scheme {scheme!r}; use smtp://, smtps://, file://, console://, "
        "null://, ses://, postmark://, mailgun://, resend:// or sendgrid://"
    )
