"""Where email goes: the Sender seam and the backends chosen by MAILQ_BACKEND.

A sender returns a SendReceipt when the message was accepted and raises RetryLater
(transient: SMTP 4xx, connection trouble) or PermanentFailure (SMTP 5xx) when it was not.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TextIO
from urllib.parse import unquote, urlsplit

from mailq.errors import BackendError
from mailq.message import OutgoingMessage

if TYPE_CHECKING:
    from mailq.replies import Quirk

BeforeData = Callable[[], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class SendReceipt:
    """The server's word on an accepted message; refusals of cc/bcc recipients included."""

    smtp_code: int | None = None
    smtp_reply: str | None = None
    refused: Mapping[str, str] = field(default_factory=dict)
    # The ESP's id for the message (HTTP backends), which its later events name.
    provider_message_id: str | None = None


class Sender(Protocol):
    async def send(
        self, message: OutgoingMessage, before_data: BeforeData | None = None
    ) -> SendReceipt: ...

    async def close(self) -> None: ...


def message_bytes(message: OutgoingMessage) -> bytes:
    return message.data


class NullSender:
    """Builds and serialises each message, then drops it (benchmarks)."""

    async def send(
        self, message: OutgoingMessage, before_data: BeforeData | None = None
    ) -> SendReceipt:
        message_bytes(message)
        return SendReceipt(250, "discarded by the null backend")

    async def close(self) -> None:
        return None


class ConsoleSender:
    """Prints each message to standard output (development)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stdout

    async def send(
        self, message: OutgoingMessage, before_data: BeforeData | None = None
    ) -> SendReceipt:
        text = message_bytes(message).decode("utf-8", errors="replace")
        self._stream.write(f"{text}\n{'-' * 72}\n")
        self._stream.flush()
        return SendReceipt(250, "printed to the console")

    async def close(self) -> None:
        return None


class FileSender:
    """Writes one .eml file per message into an outbox folder (the zero-config default)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)

    def path_for(self, message: OutgoingMessage) -> Path:
        return self.folder / f"{message.email_id:012d}.eml"

    async def send(
        self, message: OutgoingMessage, before_data: BeforeData | None = None
    ) -> SendReceipt:
        data = message_bytes(message)
        target = self.path_for(message)
        await asyncio.to_thread(_write_atomically, target, data)
        return SendReceipt(250, f"written to {target}")

    async def close(self) -> None:
        return None


def _write_atomically(target: Path, data: bytes) -> None:
    # A reader never sees half a message: write aside, then rename into place.
    partial = target.with_suffix(f".{os.getpid()}.partial")
    partial.write_bytes(data)
    partial.replace(target)


class RecordingSender:
    """Keeps every message in memory (tests that need no server)."""

    def __init__(self) -> None:
        self.sent: list[OutgoingMessage] = []

    async def send(
        self, message: OutgoingMessage, before_data: BeforeData | None = None
    ) -> SendReceipt:
        message_bytes(message)
        self.sent.append(message)
        return SendReceipt(250, "recorded")

    async def close(self) -> None:
        return None


def sender_from_url(
    url: str,
    *,
    connections: int = 4,
    connect_timeout_s: float = 10.0,
    reply_timeout_s: float = 120.0,
    quirks: Sequence[Quirk] | None = None,
) -> Sender:
    """The backend a MAILQ_BACKEND URL names; BackendError for a malformed one."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in {"smtp", "smtps"}:
        from mailq.replies import BUILTIN_QUIRKS
        from mailq.smtp import SmtpSender, SmtpTarget

        return SmtpSender(
            SmtpTarget.from_url(url),
            connections=connections,
            connect_timeout_s=connect_timeout_s,
            reply_timeout_s=reply_timeout_s,
            quirks=BUILTIN_QUIRKS if quirks is None else quirks,
        )
    from mailq.delivery.esp import ESP_SCHEMES, esp_sender_from_url

    if scheme in ESP_SCHEMES:
        return esp_sender_from_url(
            url,
            connections=connections,
            connect_timeout_s=connect_timeout_s,
            reply_timeout_s=reply_timeout_s,
        )
    if scheme == "file":
        if parts.netloc not in {"", "localhost"} or not parts.path:
            raise BackendError(f"MAILQ_BACKEND {url!r}: use file:///absolute/path/to/outbox")
        return FileSender(Path(unquote(parts.path)))
    if scheme == "console":
        return ConsoleSender()
    if scheme == "null":
        return NullSender()
    raise BackendError(
        f"MAILQ_BACKEND: unknown scheme {scheme!r}; use smtp://, smtps://, file://, console://, "
        "null://, ses://, postmark://, mailgun://, resend:// or sendgrid://"
    )
