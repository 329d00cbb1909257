"""The Sender seam: what a backend is given (an OutgoingMessage) and what it answers.

A sender returns a SendReceipt when the message was accepted and raises RetryLater
(transient: SMTP 4xx, connection trouble) or PermanentFailure (SMTP 5xx) when it was not.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from mailq.compose.message import OutgoingMessage

# Awaited right before the message itself goes out: before DATA, or, when the commands are
# pipelined (mailq.delivery.pipelining), after the server's 354; before an ESP request. It
# raises to stop the send: nothing of the message has reached the server then.
BeforeData = Callable[[], Awaitable[None]]


@dataclass(slots=True)  # not frozen: one per send (see mailq.models.ClaimedEmail)
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
