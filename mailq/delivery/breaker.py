"""The backend's circuit breaker (SPEC.md "Expiry and retry for days"), shared by every worker
through Postgres (mailq.backend_breakers).

A failure of the backend itself (BackendUnavailable: connection refused, greeting, TLS or
AUTH failure, a 421 on connect, a timeout before MAIL FROM, an ESP's account-level error)
opens it: the email's attempt is `deferred` (not counted), and no worker claims emails for
that backend while it is open. One worker at a time probes it when the probe is due — a
connection with EHLO and AUTH, or an authenticated no-op request, never a real email — and
the backoff between probes grows by PROBE_FACTOR up to PROBE_CAP_S. A probe that succeeds
closes it and wakes the workers; the deferred emails are due where they were.

One ERROR line when it opens and one INFO line when it closes, however many workers see it.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from mailq.db.breakers import (
    backend_breaker_close,
    backend_breaker_get,
    backend_breaker_probe_failed,
    backend_breaker_take_probe,
    backend_breaker_trip,
)
from mailq.db.connection import Executor
from mailq.retry import format_duration

logger = logging.getLogger(__name__)

# The first probe comes this long after the breaker opens ...
PROBE_BASE_S = 1.0
# ... each failed probe multiplies the wait by this ...
PROBE_FACTOR = 1.5
# ... up to this. A breaker that opens again within PROBE_CAP_S of closing goes on from its
# last backoff instead of starting over (a flapping backend).
PROBE_CAP_S = 300.0
# How long a probe's holder keeps it, beyond its own timeout, before another may probe.
PROBE_HOLD_MARGIN_S = 5.0
# While open, a worker looks again at least this often (another worker may be probing).
RECHECK_S = 0.5


def backend_name(sender: object) -> str:
    """The name the breaker of a sender's backend goes by: its URL without credentials."""
    name = getattr(sender, "backend_name", None)
    return name if isinstance(name, str) and name else type(sender).__name__


class Breaker:
    """One worker's handle on the breaker of its backend. `open` is this worker's view: set
    when it trips the breaker or reads it (`refresh`), cleared when a probe closes it."""

    def __init__(
        self,
        sender: Any,
        worker_id: uuid.UUID,
        *,
        probe_timeout_s: float,
        base_s: float = PROBE_BASE_S,
        factor: float = PROBE_FACTOR,
        cap_s: float = PROBE_CAP_S,
    ) -> None:
        self.backend = backend_name(sender)
        self._sender = sender
        self._worker_id = worker_id
        self._probe_timeout_s = probe_timeout_s
        self._base_s = base_s
        self._factor = factor
        self._cap_s = cap_s
        self.open = False
        self._probe_due = 0.0  # loop time of the next probe, as last read

    def probe_in_s(self) -> float:
        """Seconds until the next probe is due (0: now), as far as this worker knows."""
        return max(0.0, self._probe_due - asyncio.get_running_loop().time())

    def wait_s(self) -> float:
        """How long a worker whose breaker is open sleeps before it looks again."""
        return max(RECHECK_S, self.probe_in_s())

    def _learn(self, is_open: bool, probe_in_s: float) -> None:
        self.open = is_open
        self._probe_due = asyncio.get_running_loop().time() + max(0.0, probe_in_s)

    async def trip(self, db: Executor, reason: str) -> None:
        """The backend failed during an attempt: open the breaker (or count the deferral)."""
        opened, probe_in_s = await backend_breaker_trip(
            db, self.backend, reason, base_s=self._base_s, cap_s=self._cap_s, factor=self._factor
        )
        self._learn(True, probe_in_s)
        if opened:
            logger.error(
                "backend %s is unavailable: %s; sends to it pause (emails are deferred, no "
                "attempt counted) and it is probed until it answers",
                self.backend,
                reason,
                extra={"action": "breaker_opened", "backend": self.backend},
            )

    def open_here(self) -> None:
        """Open in this worker's view only (the database could not be told): sends pause
        here, and the first probe comes after the base backoff."""
        self._learn(True, self._base_s)

    async def refresh(self, db: Executor) -> bool:
        """Read the shared state; True when the breaker is open."""
        view = await backend_breaker_get(db, self.backend)
        self._learn(view.open, view.probe_in_s)
        return view.open

    async def probe_if_due(self, db: Executor) -> bool:
        """While open: probe the backend when the probe is due and no other worker holds it.
        Returns True once the breaker is closed (by this probe or another worker's)."""
        if not self.open:
            return True
        if self.probe_in_s() > 0:
            return False
        hold_s = self._probe_timeout_s + PROBE_HOLD_MARGIN_S
        if not await backend_breaker_take_probe(db, self.backend, self._worker_id, hold_s):
            return not await self.refresh(db)
        try:
            await asyncio.wait_for(self._probe(), timeout=self._probe_timeout_s)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            reason = str(exc) or type(exc).__name__
            probe_in_s = await backend_breaker_probe_failed(
                db, self.backend, self._worker_id, reason, factor=self._factor, cap_s=self._cap_s
            )
            logger.debug("probe of %s failed: %s", self.backend, reason)
            if probe_in_s is None:
                return not await self.refresh(db)
            self._learn(True, probe_in_s)
            return False
        closed = await backend_breaker_close(db, self.backend)
        self._learn(False, 0.0)
        if closed is not None:
            logger.info(
                "backend %s is back after %s (%d attempts deferred, %d probes failed); "
                "sends resume",
                self.backend,
                format_duration(closed.open_s),
                closed.deferred,
                closed.probes,
                extra={
                    "action": "breaker_closed",
                    "backend": self.backend,
                    "open_s": round(closed.open_s, 1),
                    "deferred": closed.deferred,
                },
            )
        return True

    async def _probe(self) -> None:
        """The sender's own probe; a sender without one (local backends) is taken as up."""
        probe = getattr(self._sender, "probe", None)
        if probe is not None:
            await probe()


def breaker_report(row: Mapping[str, Any]) -> dict[str, Any]:
    """One row of backend_breaker_list as `mailq status --json` and `GET /v1/stats` show it."""
    is_open = row["state"] == "open"
    return {
        "backend": row["backend"],
        "state": row["state"],
        "opened_at": _iso(row["opened_at"]),
        "closed_at": _iso(row["closed_at"]),
        "open_for_s": round(float(row["open_for_s"]), 1),
        "last_error": row["last_error"],
        "deferred": int(row["deferred"]),
        "probes_failed": int(row["probes"]),
        "next_probe_in_s": round(max(0.0, float(row["probe_in_s"])), 1) if is_open else None,
    }


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()
