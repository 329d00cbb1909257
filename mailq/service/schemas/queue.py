"""The queue as a whole at the HTTP edge: stats (per kind, and the backends' circuit
breakers) and live workers, and the JSON Schemas of both for /openapi.json."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mailq.delivery.breaker import breaker_report
from mailq.service.schemas.emails import STATES, iso
from mailq.service.schemas.events import RATES, rates_view
from mailq.service.schemas.fields import TIMESTAMP


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
    counts: Sequence[Mapping[str, Any]],
    sent_last_minute: Mapping[str, int],
    breakers: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """Per kind; and every backend that ever failed, its circuit breaker (open ones first)."""
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
    return {
        "kinds": dict(sorted(kinds.items())),
        "totals": totals,
        "backends": [breaker_report(b) for b in breakers],
    }


def with_bounce_rates(view: dict[str, Any], rates: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """`view` with each kind's bounce and complaint rates (events of the last days) and the
    same per campaign (over its life)."""
    for row in rates:
        if row["scope"] == "kind":
            entry = view["kinds"].setdefault(
                row["kind"],
                {
                    "states": dict.fromkeys(STATES, 0),
                    "oldest_due_age_s": None,
                    "sent_last_minute": 0,
                },
            )
            entry["rates"] = rates_view(row)
    for entry in view["kinds"].values():
        entry.setdefault("rates", rates_view(None))
    view["campaigns"] = [
        {"id": row["campaign_id"], "kind": row["kind"], "rates": rates_view(row)}
        for row in rates
        if row["scope"] == "campaign"
    ]
    return view


# -- JSON Schemas (OpenAPI 3.1) ------------------------------------------------------------

STATE_COUNTS: dict[str, Any] = {"type": "object", "additionalProperties": {"type": "integer"}}
STATS: dict[str, Any] = {
    "type": "object",
    "required": ["kinds", "totals"],
    "properties": {
        "kinds": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "properties": {
                    "states": STATE_COUNTS,
                    "oldest_due_age_s": {"type": ["number", "null"]},
                    "sent_last_minute": {"type": "integer"},
                    "rates": RATES,
                },
            },
        },
        "campaigns": {
            "type": "array",
            "description": "bounce and complaint rates of each campaign that sent or heard back",
            "items": {
                "type": "object",
                "properties": {
                    "id": {"type": "integer"},
                    "kind": {"type": "string"},
                    "rates": RATES,
                },
            },
        },
        "totals": STATE_COUNTS,
        "backends": {
            "type": "array",
            "description": "backends that ever failed: their circuit breaker, open ones first",
            "items": {
                "type": "object",
                "properties": {
                    "backend": {"type": "string"},
                    "state": {"type": "string", "enum": ["open", "closed"]},
                    "opened_at": TIMESTAMP,
                    "closed_at": TIMESTAMP,
                    "open_for_s": {"type": "number"},
                    "last_error": {"type": "string"},
                    "deferred": {"type": "integer"},
                    "probes_failed": {"type": "integer"},
                    "next_probe_in_s": {"type": ["number", "null"]},
                },
            },
        },
    },
}
WORKERS: dict[str, Any] = {
    "type": "object",
    "required": ["workers"],
    "properties": {"workers": {"type": "array", "items": {"type": "object"}}},
}
