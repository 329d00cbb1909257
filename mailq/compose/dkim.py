"""Optional DKIM signing of outgoing messages (dkimpy), with a key from MAILQ_CONFIG [dkim].

The signature covers the headers receivers care about, List-Unsubscribe and
List-Unsubscribe-Post included: RFC 8058 one-click unsubscribe is only trusted when a valid
DKIM signature covers both. Signing happens after the message is built and before the
first SMTP byte, so every attempt of an email sends a freshly signed copy of the same
content and Message-ID.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Collection

from mailq.compose.message import OutgoingMessage
from mailq.errors import ConfigError, PermanentFailure

# Signed when present (dkimpy leaves out the ones a message does not have).
SIGNED_HEADERS: tuple[str, ...] = (
    "From",
    "To",
    "Cc",
    "Reply-To",
    "Subject",
    "Date",
    "Message-ID",
    "MIME-Version",
    "Content-Type",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
)


@dataclasses.dataclass(frozen=True, slots=True)
class DkimKey:
    """A signing key: MAILQ_CONFIG [dkim] (mailq.config reads it)."""

    domain: str
    selector: str
    private_key: bytes
    headers: tuple[str, ...] | None = None


class DkimSigner:
    """Signs with `key`. `unsigned_headers` names headers never signed even when listed: a
    backend that rewrites them exposes them (Amazon SES rewrites Message-ID and Date, see
    `mailq.delivery.esp.ses.SesSender.unsigned_headers`); a signature over them would break."""

    def __init__(self, key: DkimKey, *, unsigned_headers: Collection[str] = ()) -> None:
        try:
            import dkim
        except ImportError:  # pragma: no cover - config.py checks this at start
            raise ConfigError("DKIM signing needs dkimpy: pip install 'mailq[dkim]'") from None
        self._dkim = dkim
        self.key = key
        skip = {name.lower() for name in unsigned_headers}
        self._headers = [
            h.encode("ascii") for h in (key.headers or SIGNED_HEADERS) if h.lower() not in skip
        ]

    def sign(self, message: OutgoingMessage) -> OutgoingMessage:
        """The message with a DKIM-Signature header in front."""
        present = _header_names(message.data)
        include = [h for h in self._headers if h.lower() in present]
        try:
            signature = self._dkim.sign(
                message.data,
                self.key.selector.encode("ascii"),
                self.key.domain.encode("ascii"),
                self.key.private_key,
                include_headers=include,
            )
        except self._dkim.DKIMException as exc:
            raise PermanentFailure(f"DKIM signing failed: {exc}") from None
        return dataclasses.replace(message, data=signature + message.data)


def _header_names(data: bytes) -> set[bytes]:
    head = data.split(b"\r\n\r\n", 1)[0]
    return {m.group(1).lower() for m in re.finditer(rb"^([!-9;-~]+):", head, re.MULTILINE)}
