"""A real SMTP server for the tests (aiosmtpd in a thread) that can refuse on demand.

Recipients steer the answers:
- `tempfail-N-…@…`: the first N deliveries to this recipient get `451`, then it is accepted;
- `reject…@…`: `550 5.1.1 no such user` at RCPT;
- `datafail…@…`: `554` after DATA;
- `stall…@…`: the DATA reply is held back until `release()` (a send caught mid-DATA);
- `stallrcpt…@…`: the RCPT reply is held back likewise (a send caught before DATA);
- any address in `sink.replies` gets that reply at RCPT (e.g. "451 4.7.1 on suppression list");
anything else is accepted and recorded, with the server's receive time. It offers PIPELINING
unless told not to (aiosmtpd answers pipelined commands one after another, in order).
"""

from __future__ import annotations

import asyncio
import email
import re
import socket
import ssl
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from email import policy
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SmtpProtocol
from aiosmtpd.smtp import AuthResult

_TEMPFAIL = re.compile(r"^tempfail-(\d+)-")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Received:
    mail_from: str
    recipients: list[str]
    data: bytes
    received_at: float = 0.0  # the server's wall clock when DATA was accepted

    @property
    def message(self) -> email.message.EmailMessage:
        parsed: Any = email.message_from_bytes(self.data, policy=policy.default)
        return parsed  # type: ignore[no-any-return]

    @property
    def message_id(self) -> str:
        match = re.search(rb"^Message-ID: (\S+)\r?$", self.data, re.MULTILINE | re.IGNORECASE)
        assert match, "message without a Message-ID"
        return match.group(1).decode()


@dataclass
class _Handler:
    delay_s: float = 0.0
    sessions: int = 0
    received: list[Received] = field(default_factory=list)
    tempfails: Counter[str] = field(default_factory=Counter)
    replies: dict[str, str] = field(default_factory=dict)
    released: threading.Event = field(default_factory=threading.Event)
    stalled: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)
    arrived: threading.Condition = field(init=False)
    helo_names: list[str] = field(default_factory=list)
    pipelining: bool = True  # offer PIPELINING in EHLO

    def __post_init__(self) -> None:
        self.arrived = threading.Condition(self.lock)

    async def handle_EHLO(
        self, server: SmtpProtocol, session: Any, envelope: Any, hostname: str, responses: Any
    ) -> Any:
        with self.lock:
            self.sessions += 1
            self.helo_names.append(hostname)
        session.host_name = hostname
        if self.pipelining:
            responses.insert(len(responses) - 1, "250-PIPELINING")
        return responses

    async def handle_RCPT(
        self, server: SmtpProtocol, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        local = address.split("@", 1)[0]
        if address in self.replies:
            return self.replies[address]
        if local.startswith("stallrcpt"):
            await self._stall("rcpt")
        if local.startswith("reject"):
            return "550 5.1.1 no such user here"
        match = _TEMPFAIL.match(local)
        if match:
            with self.lock:
                self.tempfails[address] += 1
                if self.tempfails[address] <= int(match.group(1)):
                    return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SmtpProtocol, session: Any, envelope: Any) -> str:
        if any(r.split("@", 1)[0].startswith("datafail") for r in envelope.rcpt_tos):
            return "554 5.6.0 message refused"
        if any(r.split("@", 1)[0].startswith("stall") for r in envelope.rcpt_tos):
            await self._stall("data")
        if self.delay_s:
            # A slow server: the message counts as received only once the reply is due.
            await asyncio.sleep(self.delay_s)
        with self.arrived:
            self.received.append(
                Received(
                    envelope.mail_from,
                    list(envelope.rcpt_tos),
                    envelope.original_content,
                    time.time(),
                )
            )
            self.arrived.notify_all()
        return "250 2.0.0 queued"

    async def _stall(self, stage: str) -> None:
        with self.lock:
            self.stalled[stage] += 1
        while not self.released.is_set():
            await asyncio.sleep(0.02)


class SmtpSink:
    def __init__(
        self,
        delay_s: float = 0.0,
        *,
        tls: ssl.SSLContext | None = None,
        implicit_tls: bool = False,
        require_starttls: bool = False,
        credentials: tuple[str, str] | None = None,
        smtputf8: bool = False,
        pipelining: bool = True,
    ) -> None:
        """`pipelining`: offer PIPELINING in EHLO, as Postfix and the big providers do (the
        sender then pipelines its commands); without it the sender sends one at a time."""
        self.port = free_port()
        self._handler = _Handler(delay_s=delay_s, pipelining=pipelining)
        options: dict[str, Any] = {"decode_data": False}
        if tls is not None and not implicit_tls:
            options.update(tls_context=tls, require_starttls=require_starttls)
        if credentials is not None:

            def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any):  # type: ignore[no-untyped-def]
                ok = (data.login.decode(), data.password.decode()) == credentials
                return AuthResult(success=ok, handled=False)

            options.update(auth_required=True, authenticator=authenticate)
        self._controller = Controller(
            self._handler,
            hostname="127.0.0.1",
            port=self.port,
            ssl_context=tls if implicit_tls else None,
            enable_SMTPUTF8=smtputf8,
            **options,
        )

    @property
    def replies(self) -> dict[str, str]:
        """Address -> the reply its RCPT gets (set before sending)."""
        return self._handler.replies

    def stalled(self, stage: str) -> int:
        """How many sends are held at `stage` ("rcpt" or "data")."""
        with self._handler.lock:
            return self._handler.stalled[stage]

    def release(self) -> None:
        self._handler.released.set()

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}?tls=none"

    @property
    def helo_names(self) -> list[str]:
        """The name each client gave in EHLO, in order."""
        with self._handler.lock:
            return list(self._handler.helo_names)

    @property
    def sessions(self) -> int:
        """How many SMTP sessions (EHLO) clients opened."""
        with self._handler.lock:
            return self._handler.sessions

    @property
    def received(self) -> list[Received]:
        with self._handler.lock:
            return list(self._handler.received)

    def arrived_at(self, to: str) -> float | None:
        """When the message sent to `to` alone arrived (None: not yet)."""
        return next((r.received_at for r in self.received if r.recipients == [to]), None)

    def count_by_message_id(self) -> Counter[str]:
        return Counter(r.message_id for r in self.received)

    def wait_for(self, count: int, timeout: float) -> list[Received]:
        """Block until at least `count` messages arrived (or the timeout passes)."""
        with self._handler.arrived:
            self._handler.arrived.wait_for(lambda: len(self._handler.received) >= count, timeout)
            return list(self._handler.received)

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self.release()
        self._controller.stop()
