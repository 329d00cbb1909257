"""The queue as a whole at the HTTP edge: live workers and the stats per kind."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mailq.service.schemas.emails import STATES, iso


def worker_view(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "hostname": row["hostname"],
        "pid": row["pid"],
        "kinds": list(row["kinds"]),
        "concurrency": row["concurrency"],
        "started_at": iso(row["started_at"]),
        "heartbeat_at": iso(row["heartbeat_at"]),
        "heartbeat_age_s": row["heartbeat_age_s"],
        "in_flight": row["in_flight"],
    }


def stats_view(
    counts: Sequence[Mapping[str, Any]], sent_last_minute: Mapping[str, int]
) -> dict[str, Any]:
    kinds: dict[str, dict[str, Any]] = {}

    def kind(name: str) -> dict[str, Any]:
        return kinds.setdefault(
            name,
            {"states": dict.fromkeys(STATES, 0), "oldest_due_age_s": None, "sent_last_minute": 0},
        )

    for row in counts:
        entry = kind(row["kind"])
        entry["states"][row["state"]] = entry["states"].get(row["state"], 0) + row["count"]
        age = row["oldest_due_age_s"]
        if age is not None and (
            entry["oldest_due_age_s"] is None or age > entry["oldest_due_age_s"]
        ):
            entry["oldest_due_age_s"] = age
    for name, sent in sent_last_minute.items():
        kind(name)["sent_last_minute"] = sent
    totals = dict.fromkeys(STATES, 0)
    for entry in kinds.values():
        for state, count in entry["states"].items():
            totals[state] = totals.get(state, 0) + count
    return {"kinds": dict(sorted(kinds.items())), "totals": totals}


# -- JSON Schemas (OpenAPI 3.1) ------------------------------------------------------------

# A bare address or a mailbox `Display Name <address>` (not JSON Schema's "email" format,
# which allows no display name).
