"""The only caller of the paused-kind statements (sql/paused_kinds.sql)."""

from __future__ import annotations

from typing import Any

from mailq.db.connection import Executor
from mailq.db.queries import QUERIES


async def kind_pause(db: Executor, kind: str, paused_by: str | None) -> bool:
    """True when the kind was not paused before."""
    return bool(await db.fetchval(QUERIES["kind_pause"], kind, paused_by))


async def kind_resume(db: Executor, kind: str) -> bool:
    """True when the kind was paused."""
    return bool(await db.fetchval(QUERIES["kind_resume"], kind))


async def kind_list_paused(db: Executor) -> list[dict[str, Any]]:
    return [dict(r) for r in await db.fetch(QUERIES["kind_list_paused"])]
