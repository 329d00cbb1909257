"""What an operator does to the queue: retry, cancel, pause and resume a kind, prune.

Called by the monitor CLI (mailq/cli/monitor.py), by the workers (the prune duty) and meant
for the admin HTTP endpoints too. Each function takes an asyncpg connection (or pool) and
changes all it was asked to or nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeAlias

import asyncpg

from mailq.db.connection import PRUNE_LOCK_KEY, schema_try_duty_lock
from mailq.db.emails import (
    email_cancel,
    email_delete_finished,
    email_mark_sent,
    email_retry,
    email_retry_failed,
    email_states,
)
from mailq.db.paused_kinds import kind_list_paused, kind_pause, kind_resume
from mailq.db.waiting_later_counts import email_waiting_later_forget
from mailq.errors import EmailNotFound, NotAllowed, UsageError
from mailq.kinds import KIND_NAME
from mailq.models import WAITING_STATES, EmailState

logger = logging.getLogger(__name__)

RETRYABLE = (EmailState.FAILED, EmailState.CANCELLED, EmailState.UNKNOWN)
CANCELLABLE = (*WAITING_STATES, EmailState.UNKNOWN)

RETRY_BATCH = 5000
PRUNE_BATCH = 5000
CANCEL_REASON = "cancelled by an operator"

Connection: TypeAlias = asyncpg.Connection | asyncpg.Pool


def check_kind(kind: str) -> str:
    if not KIND_NAME.match(kind):
        raise UsageError(
            f"{kind!r} is not a kind name (lower-case letters, digits and _, starting "
            "with a letter)"
        )
    return kind


async def retry_emails(conn: Connection, ids: Sequence[int]) -> list[int]:
    """Make failed, cancelled or unknown emails wait again, due now. EmailNotFound or
    NotAllowed (naming the first offending id) leaves every email as it was."""
    return await _change(conn, ids, email_retry, RETRYABLE, "retried")


async def cancel_emails(conn: Connection, ids: Sequence[int]) -> list[int]:
    """Cancel waiting or unknown emails; all or nothing, like retry_emails."""

    async def cancel(db: asyncpg.Connection, chosen: Sequence[int]) -> list[int]:
        return await email_cancel(db, chosen, CANCEL_REASON)

    return await _change(conn, ids, cancel, CANCELLABLE, "cancelled")


async def mark_sent(conn: Connection, ids: Sequence[int]) -> list[int]:
    """An operator's verdict on unknown emails: they did go out (state sent). All or
    nothing, like retry_emails; to send one again instead, retry it."""
    return await _change(conn, ids, email_mark_sent, (EmailState.UNKNOWN,), "marked sent")


async def retry_failed(
    conn: Connection,
    *,
    kind: str | None = None,
    since: datetime | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> int:
    """Retry every failed email (of `kind`, failed at or after `since`) that failed before
    this call; in batches, so a large outage's backlog does not hold one long lock."""
    if kind is not None:
        check_kind(kind)
    until = datetime.now(UTC)
    total = 0
    while True:
        ids = await email_retry_failed(conn, kind, since, until, RETRY_BATCH)
        total += len(ids)
        if on_batch is not None:
            on_batch(len(ids))
        if len(ids) < RETRY_BATCH:
            return total


async def pause_kind(conn: Connection, kind: str, paused_by: str | None = None) -> bool:
    """Stop every worker from claiming emails of `kind` (in-flight sends finish). True when
    it was running before, False when it was already paused."""
    return await kind_pause(conn, check_kind(kind), paused_by)


async def resume_kind(conn: Connection, kind: str) -> bool:
    """Let workers claim `kind` again, and wake them. True when it was paused."""
    return await kind_resume(conn, check_kind(kind))


async def paused_kinds(conn: Connection) -> list[str]:
    return [row["kind"] for row in await kind_list_paused(conn)]


WAITING = ("scheduled", "queued", "retrying")


def unserved_kinds(
    counts: Sequence[Mapping[str, Any]],
    workers: Sequence[Mapping[str, Any]],
    paused: Sequence[str] = (),
) -> dict[str, int]:
    """Kinds with waiting emails that no live worker serves (paused kinds aside), and how
    many wait: without a worker for them they would wait forever. `counts` are rows of
    mailq.queue_stats (kind, state, count), `workers` rows of mailq.workers (kinds)."""
    served = {kind for worker in workers for kind in worker["kinds"]}
    waiting: dict[str, int] = {}
    for row in counts:
        kind = row["kind"]
        if row["state"] in WAITING and row["count"] and kind not in served and kind not in paused:
            waiting[kind] = waiting.get(kind, 0) + int(row["count"])
    return dict(sorted(waiting.items()))


async def prune(
    pool: asyncpg.Pool,
    older_than: timedelta,
    on_batch: Callable[[int], None] | None = None,
    now: datetime | None = None,
    batch: int = PRUNE_BATCH,
) -> int | None:
    """Delete emails that finished longer than `older_than` ago, in batches (each in a
    transaction holding the prune lock, so one process at a time prunes); returns how many,
    or None when another process is pruning right now. `mailq prune` and the workers' prune
    duty both call it. The last batch also forgets the waiting counts of due-time slots long begun
    (mailq.waiting_later_counts)."""
    before = (now or datetime.now(UTC)) - older_than
    total = 0
    while True:
        async with pool.acquire() as conn, conn.transaction():
            if not await schema_try_duty_lock(conn, PRUNE_LOCK_KEY):
                return total if total else None
            deleted = await email_delete_finished(conn, before, batch)
            if deleted < batch:
                await email_waiting_later_forget(conn, now)
        total += deleted
        if on_batch is not None:
            on_batch(deleted)
        if deleted < batch:
            if total:
                logger.info(
                    "pruned %d finished emails", total, extra={"action": "pruned", "count": total}
                )
            return total


async def _change(
    conn: Connection,
    ids: Sequence[int],
    apply: Callable[[asyncpg.Connection, Sequence[int]], Awaitable[list[int]]],
    allowed: tuple[EmailState, ...],
    verb: str,
) -> list[int]:
    wanted = list(dict.fromkeys(ids))
    if not wanted:
        return []
    if isinstance(conn, asyncpg.Pool):
        async with conn.acquire() as acquired:
            return await _change(acquired, wanted, apply, allowed, verb)
    async with conn.transaction():
        changed = await apply(conn, wanted)
        done = set(changed)
        missing = [i for i in wanted if i not in done]
        if missing:
            states = await email_states(conn, missing)
            first = missing[0]
            # Raising rolls back the transaction: every email stays as it was.
            if first not in states:
                raise EmailNotFound(f"no email has id {first}")
            raise NotAllowed(
                f"email {first} is {states[first]}: only {', '.join(allowed)} emails can be {verb}"
            )
    return [i for i in wanted if i in done]
