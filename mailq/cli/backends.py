"""The backends of `mailq status`: each backend that ever failed, with its circuit breaker."""

from __future__ import annotations

from typing import Any

import asyncpg

from mailq.cli import display
from mailq.db.breakers import backend_breaker_list
from mailq.delivery.breaker import breaker_report


async def backends_report(pool: asyncpg.Pool) -> list[dict[str, Any]]:
    return [breaker_report(b) for b in await backend_breaker_list(pool)]


def backends_table(backends: list[dict[str, Any]]) -> Any:
    """Backends that ever failed: their circuit breaker (open ones first)."""
    rows = [
        [
            b["backend"],
            b["state"],
            display.age(b["open_for_s"]),
            b["deferred"],
            "-" if b["next_probe_in_s"] is None else f"in {display.age(b['next_probe_in_s'])}",
            b["last_error"],
        ]
        for b in backends
    ]
    columns = ["backend", "breaker", "open for", "deferred", "next probe", "last error"]
    opened = sum(1 for b in backends if b["state"] == "open")
    return display.table(f"Backends: {opened} unavailable", columns, rows)
