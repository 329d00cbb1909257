"""The only caller of the audit-log statements (sql/audit_log.sql): who did what from the
dashboard, and when."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from mailq.db.connection import Executor
from mailq.db.queries import QUERIES

# The things an action can be on (the table's CHECK constraint lists the same).
TARGET_TYPES = ("email", "emails", "kind", "campaign", "suppression", "failures")


async def audit_log_add(
    db: Executor,
    actor: str,
    action: str,
    target_type: str,
    target: str,
    *,
    email_ids: Sequence[int] | None = None,
    detail: Mapping[str, Any] | None = None,
) -> int:
    """Record one action (in the caller's transaction, so it commits with the change)."""
    row = await db.fetchrow(
        QUERIES["audit_log_add"],
        actor,
        action,
        target_type,
        target,
        None if email_ids is None else list(email_ids),
        orjson.dumps(dict(detail or {})).decode(),
    )
    return int(row["id"])


def _rows(rows: list[Any]) -> list[dict[str, Any]]:
    out = []
    for r in rows:
        entry = dict(r)
        entry["detail"] = orjson.loads(entry["detail"])
        out.append(entry)
    return out


async def audit_log_for_target(
    db: Executor, target_type: str, target: str, limit: int = 20
) -> list[dict[str, Any]]:
    return _rows(await db.fetch(QUERIES["audit_log_for_target"], target_type, target, limit))


async def audit_log_for_email(db: Executor, email_id: int, limit: int = 20) -> list[dict[str, Any]]:
    return _rows(await db.fetch(QUERIES["audit_log_for_email"], email_id, limit))


async def audit_log_of_type(
    db: Executor, target_types: Sequence[str], limit: int = 20
) -> list[dict[str, Any]]:
    return _rows(await db.fetch(QUERIES["audit_log_of_type"], list(target_types), limit))
