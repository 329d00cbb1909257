"""ESP HTTP backends: Amazon SES, Postmark, Mailgun, Resend, SendGrid (SPEC.md "ESP HTTP
backends").

Each is a Sender (`send`, `close`) with two more attributes a worker may use:
- `max_batch`: how many messages one `send_batch` request takes (Postmark 500, Resend 100,
  the others 1);
- `await send_batch(messages, before_data=None) -> list[SendReceipt | SendFailure]`: one
  result per message, in order, never raising a SendFailure;
and `unsigned_headers`, the headers a DKIM signature made by mailq must leave out (SES).

Their dependencies are extras: httpx with HTTP/2 (`mailq[esp]`), and botocore for SES
(`mailq[ses]`). A missing one is a BackendError at start naming the extra.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from mailq.errors import BackendError

if TYPE_CHECKING:
    from mailq.delivery.esp.client import HttpSender

ESP_SCHEMES = frozenset({"ses", "postmark", "mailgun", "resend", "sendgrid"})

# scheme: (options it takes besides endpoint=, the modules it needs, the extra that has them)
_NEEDS: dict[str, tuple[tuple[str, ...], tuple[str, ...], str]] = {
    "ses": (("configuration_set",), ("httpx", "h2", "botocore"), "ses"),
    "postmark": (("message_stream",), ("httpx", "h2"), "esp"),
    "mailgun": (("region",), ("httpx", "h2"), "esp"),
    "resend": ((), ("httpx", "h2"), "esp"),
    "sendgrid": (("region",), ("httpx", "h2"), "esp"),
}


def esp_sender_from_url(
    url: str,
    *,
    connections: int = 4,
    connect_timeout_s: float = 10.0,
    reply_timeout_s: float = 120.0,
) -> HttpSender:
    """The ESP sender a MAILQ_BACKEND URL names; BackendError for a malformed URL or a
    missing extra."""
    from mailq.delivery.esp.target import EspTarget

    scheme = url.partition(":")[0].lower()
    if scheme not in ESP_SCHEMES:
        raise BackendError(f"MAILQ_BACKEND: {scheme!r} is not an ESP scheme")
    allowed, modules, extra = _NEEDS[scheme]
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            raise BackendError(
                f"MAILQ_BACKEND {scheme}:// needs the {name} package: pip install 'mailq[{extra}]'"
            ) from None
    target = EspTarget.from_url(url, allowed)
    provider = importlib.import_module(f"mailq.delivery.esp.{scheme}")
    sender: HttpSender = provider.from_target(
        target,
        connections=connections,
        connect_timeout_s=connect_timeout_s,
        reply_timeout_s=reply_timeout_s,
    )
    return sender
