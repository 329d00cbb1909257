"""Inbound bounce mail: what `mailq bounces serve` accepts, and what it does with a message
(also `mailq bounces import`, one message from an MTA's pipe transport).

Accepted recipients, all others refused (no relay, no backscatter):
- a VERP address of MAILQ_BOUNCE_DOMAIN whose token a MAILQ_SECRET_KEY key signed
  (`b-<token>@domain`; a forged or altered token is refused at RCPT);
- `postmaster@` that domain (RFC 5321 §4.5.1): kept as a file under
  `$MAILQ_HOME/postmaster/`, never parsed as a bounce (a human reads it);
- the feedback-loop address `[bounces] feedback_address` (ARF reports).

A message is read by mailq.bounces.dsn.parse_report and its events are recorded by
mailq.bounces.recorder.record_events.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from mailq.bounces.dsn import parse_report
from mailq.bounces.errors import ForgedVerpToken
from mailq.bounces.recorder import BounceRules, Recorded, record_events
from mailq.bounces.report import ReportKind
from mailq.bounces.verp import Verp

logger = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 10 * 1024 * 1024  # a bounce with the original attached; more is refused
POSTMASTER_FOLDER = "postmaster"


@dataclass(frozen=True, slots=True)
class Received:
    """What became of one inbound message."""

    kind: str  # a ReportKind, or "postmaster"
    recorded: Recorded | None = None
    kept_as: Path | None = None

    def summary(self) -> str:
        if self.kept_as is not None:
            return f"postmaster mail kept as {self.kept_as}"
        r = self.recorded
        if r is None or not (r.recorded or r.duplicates):
            return f"{self.kind}: no event"
        return (
            f"{self.kind}: {r.recorded} event(s) recorded, {r.duplicates} duplicate(s), "
            f"{r.unmatched} unmatched, {len(r.suppressed)} address(es) suppressed"
        )


class Inbox:
    """Decides which recipients are ours and records what arrives for them."""

    def __init__(
        self,
        pool: asyncpg.Pool | asyncpg.Connection,
        verp: Verp | None,
        *,
        home: Path,
        feedback_address: str | None = None,
        rules: BounceRules | None = None,
    ) -> None:
        self._pool = pool
        self.verp = verp
        self._feedback = feedback_address.lower() if feedback_address else None
        self._postmaster = f"postmaster@{verp.domain}" if verp is not None else None
        self._rules = rules or BounceRules()
        self._folder = home / POSTMASTER_FOLDER

    def accepts(self, address: str) -> bool:
        """A recipient this server takes mail for (see the module docstring)."""
        bare = address.strip().strip("<>").strip().lower()
        if bare in {self._feedback, self._postmaster} - {None}:
            return True
        if bare.startswith("postmaster@") and self._postmaster is None:
            return False
        if self.verp is None:
            return False
        token = self.verp.local_part(bare)
        if token is None:
            return False
        try:
            self.verp.read_token(token)
        except ForgedVerpToken:
            return False
        return True

    def is_postmaster(self, recipients: Sequence[str]) -> bool:
        lowered = {r.strip().strip("<>").lower() for r in recipients}
        if self._postmaster is not None and lowered == {self._postmaster}:
            return True
        return bool(lowered) and all(r.startswith("postmaster@") for r in lowered)

    async def receive(self, raw: bytes, recipients: Sequence[str] = ()) -> Received:
        """Keep postmaster mail; read anything else and record its events. Database errors
        propagate (the caller answers 451 or exits 75, so the MTA tries again)."""
        if recipients and self.is_postmaster(recipients):
            return Received("postmaster", kept_as=self._keep(raw))
        report = parse_report(raw, verp=self.verp, envelope_recipients=recipients)
        if not report.events:
            logger.info(
                "inbound message without events (%s)",
                report.kind,
                extra={"action": "inbound_ignored", "report_kind": str(report.kind)},
            )
            return Received(str(report.kind))
        recorded = await record_events(self._pool, report.events, self._rules)
        logger.info(
            "inbound %s: %d events recorded, %d duplicates",
            report.kind,
            recorded.recorded,
            recorded.duplicates,
            extra={"action": "inbound_recorded", "report_kind": str(report.kind)},
        )
        return Received(str(report.kind), recorded=recorded)

    def _keep(self, raw: bytes) -> Path:
        self._folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        path = self._folder / f"{stamp}-{hashlib.sha256(raw).hexdigest()[:16]}.eml"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(raw)
        logger.warning(
            "mail to postmaster kept for a human to read: %s",
            path,
            extra={"action": "postmaster_kept"},
        )
        return path


__all__ = ["MAX_MESSAGE_BYTES", "Inbox", "Received", "ReportKind"]
