"""SMTP delivery through aiosmtplib: a small pool of connections kept open and reused.

The `to` recipient decides an email's fate: it is sent RCPT first, and a refusal of it ends
the transaction before the message goes out. Refusals of cc/bcc recipients are returned on
the receipt.

A server that offers PIPELINING (RFC 2920; Postfix, Exim, the big providers) gets MAIL, each
RCPT and DATA in one write and, after its 354, the message (mailq.delivery.pipelining): two
round trips per email instead of four. The replies are then read in order and mean what they
mean one at a time, with two differences: the lease is proven (`before_data`) after the 354,
right before the message, and a transaction refused after the server had accepted DATA (its
`to` refused while a cc was accepted) is ended by closing the connection, never by an empty
message. Other servers get one command at a time, through aiosmtplib.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib

from mailq.compose.message import OutgoingMessage
from mailq.delivery.pipelined_send import StaleConnection, send_pipelined, smtputf8_options
from mailq.delivery.pipelining import PipelinedConnection
from mailq.delivery.replies import BUILTIN_QUIRKS, Quirk, classify
from mailq.delivery.sender import BeforeData, SendReceipt
from mailq.errors import (
    BackendError,
    BackendUnavailable,
    RetryLater,
    SendFailure,
)
from mailq.redaction import redact_url

logger = logging.getLogger(__name__)

TLS_MODES = ("auto", "starttls", "none")
PIPELINING_MODES = ("auto", "off")
# The most connections one worker may keep to one server (`connections=` in MAILQ_BACKEND).
MAX_CONNECTIONS = 1_000


@dataclass(frozen=True, slots=True)
class SmtpTarget:
    host: str
    port: int
    implicit_tls: bool
    tls: str
    username: str | None
    password: str | None
    # A CA bundle to trust besides the system's (a private relay with its own CA).
    cafile: str | None = None
    # The most connections a worker keeps to the server (`connections=`; None: one per send
    # slot). Fewer connections than slots keep each one busy while outcomes are committed.
    connections: int | None = None
    # `pipelining=off`: one command at a time even where the server offers PIPELINING (a
    # relay that offers it and mishandles it); `auto`, the default, pipelines where offered.
    pipelining: bool = True

    @classmethod
    def from_url(cls, url: str) -> SmtpTarget:
        parts = urlsplit(url)
        implicit = parts.scheme.lower() == "smtps"
        query = parse_qs(parts.query)
        tls = (query.get("tls") or ["auto"])[-1].lower()
        if tls not in TLS_MODES:
            raise BackendError(f"MAILQ_BACKEND: tls={tls!r}; use one of {', '.join(TLS_MODES)}")
        pipelining = (query.get("pipelining") or ["auto"])[-1].lower()
        if pipelining not in PIPELINING_MODES:
            modes = ", ".join(PIPELINING_MODES)
            raise BackendError(f"MAILQ_BACKEND: pipelining={pipelining!r}; use one of {modes}")
        if implicit and "tls" in query:
            raise BackendError("MAILQ_BACKEND: smtps:// is implicit TLS; tls= is for smtp://")
        if not parts.hostname:
            raise BackendError(f"MAILQ_BACKEND {redact_url(url)!r}: no host")
        try:
            port = parts.port or (465 if implicit else 25)
        except ValueError:
            raise BackendError(
                f"MAILQ_BACKEND {redact_url(url)!r}: the port is not a number"
            ) from None
        return cls(
            host=parts.hostname,
            port=port,
            implicit_tls=implicit,
            tls=tls,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            cafile=query["cafile"][-1] if query.get("cafile") else None,
            connections=_connections(query),
            pipelining=pipelining == "auto",
        )


def _connections(query: dict[str, list[str]]) -> int | None:
    if "connections" not in query:
        return None
    raw = query["connections"][-1]
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_CONNECTIONS:
        raise BackendError(
            f"MAILQ_BACKEND: connections={raw!r}; use a whole number from 1 to {MAX_CONNECTIONS}"
        )
    return int(raw)


class _Closing(Exception):
    """The server answered MAIL FROM with 421: it is closing the connection."""


# A connection of the pool: pipelined once its server offered PIPELINING, else aiosmtplib's.
Connection = aiosmtplib.SMTP | PipelinedConnection


class SmtpSender:
    """Failures of the server itself (it cannot be reached; the greeting, TLS or AUTH fails;
    it answers 421 on connect; the connection drops or times out before DATA) raise
    BackendUnavailable: they are not the email's (its attempt is deferred) and open the
    backend's breaker. A reply to the email's own commands is classified (mailq.replies)."""

    # With MAILQ_BOUNCE_DOMAIN, the worker gives each email a VERP envelope sender (ESP
    # backends keep the provider's own return path).
    verp_envelope = True

    def __init__(
        self,
        target: SmtpTarget,
        *,
        connections: int = 4,
        connect_timeout_s: float = 10.0,
        reply_timeout_s: float = 120.0,
        quirks: Sequence[Quirk] = BUILTIN_QUIRKS,
        helo_name: str | None = None,
    ) -> None:
        """`helo_name` is the name given in EHLO (MAILQ_HELO_NAME); None: the host's FQDN."""
        self.target = target
        self.helo_name = helo_name
        self.quirks = tuple(quirks)
        scheme = "smtps" if target.implicit_tls else "smtp"
        self.backend_name = f"{scheme}://{target.host}:{target.port}"
        self._connect_timeout_s = connect_timeout_s
        self._reply_timeout_s = reply_timeout_s
        if target.connections is not None:
            connections = min(connections, target.connections)
        self._slots = asyncio.Semaphore(max(1, connections))
        self._idle: list[Connection] = []
        self._closed = False

    async def _connect(self) -> aiosmtplib.SMTP:
        """A new connection: greeting, STARTTLS and AUTH as configured (aiosmtplib does them
        in `connect`); BackendUnavailable when any of them fails."""
        start_tls: bool | None = {"auto": None, "starttls": True, "none": False}[self.target.tls]
        client = aiosmtplib.SMTP(
            hostname=self.target.host,
            port=self.target.port,
            timeout=self._reply_timeout_s,
            use_tls=self.target.implicit_tls,
            start_tls=False if self.target.implicit_tls else start_tls,
            username=self.target.username,
            password=self.target.password,
            cert_bundle=self.target.cafile,
            local_hostname=self.helo_name,
        )
        try:
            await client.connect(timeout=self._connect_timeout_s)
        except aiosmtplib.SMTPAuthenticationError as exc:
            client.close()
            raise BackendUnavailable(
                f"SMTP authentication failed ({exc.code} {exc.message}): check the credentials "
                "in MAILQ_BACKEND",
                smtp_code=exc.code,
                smtp_reply=exc.message,
            ) from None
        except aiosmtplib.SMTPResponseException as exc:
            client.close()
            raise BackendUnavailable(
                f"the SMTP server refused the connection: {exc.code} {exc.message}",
                smtp_code=exc.code,
                smtp_reply=exc.message,
            ) from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            client.close()
            raise BackendUnavailable(
                f"cannot reach the SMTP server {self.backend_name}: {exc or type(exc).__name__}"
            ) from None
        return client

    async def _open(self) -> Connection:
        """A new connection for sending, greeted, and pipelined when the server offers
        PIPELINING."""
        client = await self._greeted()
        if not self.target.pipelining:
            return client
        return PipelinedConnection.take_over(client) or client

    async def _greeted(self) -> aiosmtplib.SMTP:
        """A new connection after EHLO (HELO when EHLO is refused), whose extensions are then
        known; BackendUnavailable when the server refuses both or drops the connection."""
        client = await self._connect()
        try:
            if client.is_ehlo_or_helo_needed:
                try:
                    await client.ehlo()
                except aiosmtplib.SMTPHeloError:
                    if not client.is_connected:
                        raise
                    await client.helo()
        except aiosmtplib.SMTPResponseException as exc:
            client.close()
            raise BackendUnavailable(
                f"the SMTP server refused EHLO and HELO: {exc.code} {exc.message}",
                smtp_code=exc.code,
                smtp_reply=exc.message,
            ) from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            client.close()
            raise BackendUnavailable(
                f"the SMTP server dropped the connection at EHLO: {exc or type(exc).__name__}"
            ) from None
        return client

    async def probe(self) -> None:
        """Connect with EHLO, STARTTLS and AUTH as a send would, then QUIT: sends nothing.
        BackendUnavailable when the server is not usable."""
        client = await self._greeted()
        try:
            await asyncio.wait_for(client.quit(), timeout=self._connect_timeout_s)
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            client.close()

    async def send(
        self, message: OutgoingMessage, before_data: BeforeData | None = None
    ) -> SendReceipt:
        async with self._slots:
            client = self._idle.pop() if self._idle else None
            if client is not None and not client.is_connected:
                client = None
            try:
                try:
                    if client is None:
                        client = await self._open()
                        receipt = await self._transaction(client, message, before_data)
                    else:
                        receipt = await self._transaction(client, message, before_data, True)
                except StaleConnection:
                    await self._discard(client)
                    client = await self._open()
                    receipt = await self._transaction(client, message, before_data)
            except SendFailure:
                await self._recycle(client)
                raise
            except aiosmtplib.SMTPResponseException as exc:
                await self._discard(client)
                raise classify(exc.code, exc.message, self.quirks) from None
            except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
                await self._discard(client)
                raise RetryLater(f"SMTP connection problem: {exc or type(exc).__name__}") from None
            self._idle.append(client)
            return receipt

    async def _transaction(
        self,
        client: Connection,
        message: OutgoingMessage,
        before_data: BeforeData | None,
        reused: bool = False,
    ) -> SendReceipt:
        if isinstance(client, PipelinedConnection):
            return await send_pipelined(
                client,
                message,
                before_data,
                reused=reused,
                timeout=self._reply_timeout_s,
                quirks=self.quirks,
            )
        try:
            options = await self._mail(client, message)
        except (aiosmtplib.SMTPServerDisconnected, OSError, TimeoutError, _Closing) as exc:
            # Before MAIL FROM was answered nothing of the email reached the server.
            if reused:
                raise StaleConnection() from None
            raise BackendUnavailable(
                f"the SMTP server dropped the connection before MAIL FROM: "
                f"{exc or type(exc).__name__}"
            ) from None
        encoding = "utf-8" if options else "ascii"
        refused: dict[str, str] = {}
        try:
            await client.rcpt(message.to, encoding=encoding)
            for recipient in message.other_recipients:
                try:
                    await client.rcpt(recipient, encoding=encoding)
                except aiosmtplib.SMTPRecipientRefused as exc:
                    refused[recipient] = f"{exc.code} {exc.message}"
        except aiosmtplib.SMTPResponseException as exc:
            raise classify(exc.code, exc.message, self.quirks) from None
        except (aiosmtplib.SMTPServerDisconnected, OSError, TimeoutError) as exc:
            # Before DATA: the server does not have the email, and the fault is its own.
            raise BackendUnavailable(
                f"the SMTP server dropped the connection before DATA: {exc or type(exc).__name__}"
            ) from None
        if before_data is not None:
            await before_data()
        try:
            response = await client.data(message.data)
        except aiosmtplib.SMTPResponseException as exc:
            raise classify(exc.code, exc.message, self.quirks) from None
        return SendReceipt(response.code, response.message, refused)

    async def _mail(self, client: aiosmtplib.SMTP, message: OutgoingMessage) -> list[str]:
        """EHLO when needed and MAIL FROM; the options the transaction uses."""
        if message.needs_smtputf8 and client.is_ehlo_or_helo_needed:
            await client.ehlo()  # the server's extensions are known only after EHLO
        options = smtputf8_options(message, client.supports_extension("smtputf8"))
        encoding = "utf-8" if options else "ascii"
        try:
            await client.mail(message.mail_from, options=options, encoding=encoding)
        except aiosmtplib.SMTPResponseException as exc:
            if exc.code == 421:  # the server is closing the connection, not refusing the email
                raise _Closing(f"{exc.code} {exc.message}") from None
            raise classify(exc.code, exc.message, self.quirks) from None
        return options

    async def _recycle(self, client: Connection | None) -> None:
        """After a refused transaction the connection is still good once RSET is accepted."""
        if client is None or not client.is_connected:
            return
        if isinstance(client, PipelinedConnection):
            if await client.reset(self._reply_timeout_s):
                self._idle.append(client)
            return
        try:
            await client.rset()
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            await self._discard(client)
            return
        self._idle.append(client)

    async def _discard(self, client: Connection | None) -> None:
        if client is None:
            return
        if isinstance(client, PipelinedConnection):
            client.close()
            return
        try:
            client.close()
        except (aiosmtplib.SMTPException, OSError):  # pragma: no cover - best effort
            logger.debug("closing a broken SMTP connection failed", exc_info=True)

    async def close(self) -> None:
        self._closed = True
        while self._idle:
            client = self._idle.pop()
            if isinstance(client, PipelinedConnection):
                await client.quit(timeout=2.0)
                continue
            try:
                await asyncio.wait_for(client.quit(), timeout=2.0)
            except (aiosmtplib.SMTPException, OSError, TimeoutError):
                client.close()
