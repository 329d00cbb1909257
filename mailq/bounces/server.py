"""`mailq bounces serve`: an inbound SMTP server (aiosmtpd) for the bounce domain.

Every RCPT is checked by the Inbox: a valid VERP address, postmaster@ or the feedback address
is accepted (250), anything else refused with 550 (no relay, and a forged VERP token never gets
as far as DATA). A message over the size limit is refused (552). A message whose events cannot
be recorded because the database is unavailable is answered 451, so the sending MTA tries again
later; a message that is recorded, or read and found to carry no event, 250.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from mailq.bounces.inbound import MAX_MESSAGE_BYTES, Inbox
from mailq.db.connection import DATABASE_ERRORS

logger = logging.getLogger(__name__)

DEFAULT_LISTEN = "127.0.0.1:2526"
MAX_RECIPIENTS = 100
COMMAND_TIMEOUT_S = 60.0


class BounceHandler:
    """The aiosmtpd handler: RCPT checks and DATA recording."""

    def __init__(self, inbox: Inbox) -> None:
        self.inbox = inbox

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return "452 4.5.3 Too many recipients"
        if not self.inbox.accepts(address):
            logger.info(
                "refused a recipient that is not ours",
                extra={"action": "inbound_rcpt_refused"},
            )
            return "550 5.1.1 No such recipient here"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content
        if not isinstance(raw, bytes):
            raw = str(raw or "").encode("utf-8", "replace")
        try:
            received = await self.inbox.receive(raw, list(envelope.rcpt_tos))
        except DATABASE_ERRORS as exc:
            logger.warning(
                "could not record an inbound message (the sender will retry): %s",
                exc,
                extra={"action": "inbound_deferred"},
            )
            return "451 4.3.0 Temporarily unable to record this message, try again later"
        except Exception:
            logger.exception("inbound message failed", extra={"action": "inbound_error"})
            return "451 4.3.0 Temporarily unable to process this message"
        logger.info(received.summary(), extra={"action": "inbound_done"})
        return "250 2.0.0 OK"


def split_listen(listen: str) -> tuple[str, int]:
    """`HOST:PORT` (IPv6 as `[::1]:2526`); ValueError when it is not one."""
    host, colon, port = listen.rpartition(":")
    if not colon or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--listen {listen!r}: give HOST:PORT, e.g. {DEFAULT_LISTEN}")
    return host.strip("[]") or "127.0.0.1", int(port)


async def serve(
    inbox: Inbox,
    host: str,
    port: int,
    stop: asyncio.Event,
    *,
    hostname: str | None = None,
    on_listening: Any = None,
) -> None:
    """Serve until `stop` is set."""
    handler = BounceHandler(inbox)
    loop = asyncio.get_running_loop()

    def protocol() -> SMTP:
        return SMTP(
            handler,
            data_size_limit=MAX_MESSAGE_BYTES,
            enable_SMTPUTF8=True,
            hostname=hostname,
            timeout=COMMAND_TIMEOUT_S,
        )

    server = await loop.create_server(protocol, host=host, port=port)
    bound = server.sockets[0].getsockname() if server.sockets else (host, port)
    logger.info(
        "bounce server listening on %s:%s",
        bound[0],
        bound[1],
        extra={"action": "bounces_listening"},
    )
    if on_listening is not None:
        on_listening(bound)
    try:
        await stop.wait()
    finally:
        server.close()
        await server.wait_closed()
