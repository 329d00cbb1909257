"""One email through a pipelined connection (mailq.delivery.pipelining): MAIL, every RCPT and
DATA in one write, their replies in order, then, after DATA's 354 and the lease proven, the
message. Each reply means what it means when the commands go one at a time
(mailq.delivery.smtp), with one thing more: a transaction refused after the server accepted
DATA (its `to` refused, a cc taken) is ended by closing the connection, never by an empty
message, which would reach that cc.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from aiosmtplib.email import quote_address

from mailq.compose.message import OutgoingMessage
from mailq.delivery.pipelining import (
    ConnectionDropped,
    PipelinedConnection,
    Reply,
    content_for_data,
)
from mailq.delivery.replies import Quirk, classify
from mailq.delivery.sender import BeforeData, SendReceipt
from mailq.errors import BackendUnavailable, PermanentFailure

# The replies that accept a recipient.
RCPT_OK = (250, 251)
# local@domain with nothing that needs parsing or quoting on an SMTP command line: no space,
# control character, angle bracket, parenthesis, quote, comma, semicolon or backslash.
_PLAIN_ADDRESS = re.compile(
    r'[^\s\x00-\x1f\x7f<>()",;:\\\[\]@]+@[^\s\x00-\x1f\x7f<>()",;:\\\[\]@]+'
)


class StaleConnection(Exception):
    """A kept connection turned out dead before MAIL FROM was answered: try a fresh one."""


@dataclass(frozen=True, slots=True)
class _Envelope:
    """The replies to MAIL, each RCPT (the `to` first) and DATA."""

    mail: Reply
    to: Reply
    others: list[Reply]
    data: Reply


def smtputf8_options(message: OutgoingMessage, offered: bool) -> list[str]:
    """MAIL FROM's options: SMTPUTF8 for an address with a non-ASCII local part, which a server
    that does not offer it cannot take."""
    if not message.needs_smtputf8:
        return []
    if not offered:
        raise PermanentFailure(
            "an address has a non-ASCII local part (before the @) and the server does "
            "not offer SMTPUTF8, which such an address needs"
        )
    return ["SMTPUTF8"]


async def send_pipelined(
    conn: PipelinedConnection,
    message: OutgoingMessage,
    before_data: BeforeData | None,
    *,
    reused: bool,
    timeout: float,
    quirks: Sequence[Quirk],
) -> SendReceipt:
    envelope = await _envelope(conn, message, reused=reused, timeout=timeout, quirks=quirks)
    for reply in (envelope.mail, envelope.to):
        if reply.code not in RCPT_OK:  # (MAIL's 250 among them)
            if envelope.data.code == 354:
                conn.close()  # DATA accepted all the same: only closing ends it unsent
            raise classify(reply.code, reply.text, quirks)
    refused = {
        recipient: f"{reply.code} {reply.text}"
        for recipient, reply in zip(message.other_recipients, envelope.others, strict=True)
        if reply.code not in RCPT_OK
    }
    if envelope.data.code != 354:
        raise classify(envelope.data.code, envelope.data.text, quirks)
    if before_data is not None:
        try:
            await before_data()
        except BaseException:
            conn.close()  # in DATA: only closing ends it without a message
            raise
    conn.write(content_for_data(message.data))
    final = await conn.reply(timeout)
    if final.code != 250:
        raise classify(final.code, final.text, quirks)
    return SendReceipt(final.code, final.text, refused)


async def _envelope(
    conn: PipelinedConnection,
    message: OutgoingMessage,
    *,
    reused: bool,
    timeout: float,
    quirks: Sequence[Quirk],
) -> _Envelope:
    """Write MAIL, each RCPT and DATA at once and read their replies. The failures of the
    server itself are raised here: the connection dropped (StaleConnection when it was a kept
    one, before MAIL FROM was answered: nothing of the email reached the server), and a 421,
    after which the server answers nothing more (to the `to` it means what it means when
    sent alone)."""
    options = smtputf8_options(message, conn.smtputf8)
    encoding = "utf-8" if options else "ascii"
    recipients = [message.to, *message.other_recipients]
    commands = [_command(b"MAIL FROM:", message.mail_from, options, encoding)]
    commands += [_command(b"RCPT TO:", r, [], encoding) for r in recipients]
    try:
        conn.write(b"".join(commands) + b"DATA\r\n")
        mail = await conn.reply(timeout)
    except (ConnectionDropped, TimeoutError) as exc:
        if reused:
            raise StaleConnection() from None
        raise BackendUnavailable(
            f"the SMTP server dropped the connection before MAIL FROM: {exc}"
        ) from None
    if mail.code == 421 and reused:
        raise StaleConnection()
    replies, expected = [mail], len(recipients) + 2
    try:
        while len(replies) < expected and replies[-1].code != 421:
            replies.append(await conn.reply(timeout))
    except (ConnectionDropped, TimeoutError) as exc:
        # Before DATA was answered: the server does not have the email, and the fault is its own.
        raise BackendUnavailable(
            f"the SMTP server dropped the connection before DATA: {exc}"
        ) from None
    if len(replies) < expected:  # a 421 (the connection is closed: PipelinedConnection.reply)
        closing = replies[-1]
        if len(replies) == 2:
            raise classify(closing.code, closing.text, quirks)
        raise BackendUnavailable(
            f"the SMTP server is closing the connection: {closing.code} {closing.text}",
            smtp_code=closing.code,
            smtp_reply=closing.text,
        )
    return _Envelope(replies[0], replies[1], replies[2:-1], replies[-1])


def _command(verb: bytes, address: str, options: list[str], encoding: str) -> bytes:
    """`MAIL FROM:<address> OPTIONS` or `RCPT TO:<address>`, one line. A plain address (all the
    worker sends: they were checked when queued) is put in angle brackets as it is; anything
    else goes through aiosmtplib's quoting, which parses it and refuses an address that
    cannot go on a command line."""
    quoted = f"<{address}>" if _PLAIN_ADDRESS.fullmatch(address) else quote_address(address)
    line = verb + quoted.encode(encoding)
    for option in options:
        line += b" " + option.encode("ascii")
    return line + b"\r\n"
