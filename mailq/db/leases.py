"""The only caller of the worker lease statements (sql/worker_leases.sql)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mailq.db.connection import Executor
from mailq.db.queries import QUERIES


@dataclass(frozen=True, slots=True)
class WorkerIdentity:
    id: uuid.UUID
    hostname: str
    pid: int
    kinds: tuple[str, ...]
    concurrency: int


async def worker_lease_register(db: Executor, worker: WorkerIdentity, lease_s: float) -> bool:
    """(Re)register; True when the worker had no lease that still held (it lapsed)."""
    return bool(
        await db.fetchval(
            QUERIES["worker_lease_register"],
            worker.id,
            worker.hostname,
            worker.pid,
            list(worker.kinds),
            worker.concurrency,
            lease_s,
        )
    )


async def worker_lease_renew(db: Executor, worker_id: uuid.UUID, lease_s: float) -> bool:
    """Extend the lease; False when it was lost (it had expired, or the row is gone)."""
    return await db.fetchval(QUERIES["worker_lease_renew"], worker_id, lease_s) is not None


async def worker_lease_delete(db: Executor, worker_id: uuid.UUID) -> None:
    await db.execute(QUERIES["worker_lease_delete"], worker_id)


async def worker_lease_delete_expired(
    db: Executor, grace_s: float, limit: int, now: datetime | None = None
) -> int:
    return len(await db.fetch(QUERIES["worker_lease_delete_expired"], grace_s, limit, now))


async def worker_lease_list(db: Executor) -> list[dict[str, Any]]:
    return [dict(r) for r in await db.fetch(QUERIES["worker_lease_list"])]
