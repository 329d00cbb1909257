"""Backends that need no server: null (benchmarks), console (development), file (the
zero-config outbox) and recording (tests)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import TextIO

from mailq.compose.message import OutgoingMessage
from mailq.delivery.sender import BeforeData, SendReceipt


class NullSender:
    """Builds and serialises each message, then drops it (benchmarks)."""

    backend_name = "null://"

    async def send(
        self, message: OutgoingMessage, before_data: BeforeData | None = None
    ) -> SendReceipt:
        return SendReceipt(250, "discarded by the null backend")

    async def close(self) -> None:
        return None


class ConsoleSender:
    """Prints each message to standard output (development)."""

    backend_name = "console://"

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stdout

    async def send(
        self, message: OutgoingMessage, before_data: BeforeData | None = None
    ) -> SendReceipt:
        text = message.data.decode("utf-8", errors="replace")
        self._stream.write(f"{text}\n{'-' * 72}\n")
        self._stream.flush()
        return SendReceipt(250, "printed to the console")

    async def close(self) -> None:
        return None


class FileSender:
    """Writes one .eml file per message into an outbox folder (the zero-config default)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.backend_name = f"file://{folder}"
        self.folder.mkdir(parents=True, exist_ok=True)

    def path_for(self, message: OutgoingMessage) -> Path:
        return self.folder / f"{message.email_id:012d}.eml"

    async def send(
        self, message: OutgoingMessage, before_data: BeforeData | None = None
    ) -> SendReceipt:
        data = message.data
        if not data.endswith(b"\r\n"):
            # A file ends as SMTP delivers it, with a final CRLF (else DKIM verifiers that
            # read the file see an altered body).
            data += b"\r\n"
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
        self.sent.append(message)
        return SendReceipt(250, "recorded")

    async def close(self) -> None:
        return None
