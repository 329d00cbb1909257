"""Emails for tests."""

from __future__ import annotations

from typing import Any

from mailq import Email


def welcome(n: int = 0, **changes: Any) -> Email:
    fields: dict[str, Any] = {
        "to": f"user{n}@example.com",
        "kind": "welcome",
        "subject": "Welcome, {{ name }}",
        "text": "Hello {{ name }}, glad you are here.",
        "context": {"name": f"user {n}"},
    }
    fields.update(changes)
    return Email(**fields)


def campaign(n: int = 0, kind: str = "search_engine", **changes: Any) -> Email:
    return welcome(n, kind=kind, **changes)
