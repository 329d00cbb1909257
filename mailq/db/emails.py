"""The only caller of the statements on mailq.emails and mailq.attempts (sql/emails.sql),
but for the claim's (mailq.db.claims).

Enqueue has one plan (_insert_plan) and two thin drivers: email_insert (asyncpg) and
email_insert_sync (psycopg, for enqueue_sync)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, LiteralString, cast

import asyncpg
import psycopg

from mailq.db.connection import Executor
from mailq.db.queries import QUERIES, SqlLoadError
from mailq.models import AttemptResult, ClaimedEmail, EmailRow

# Above this many rows an enqueue goes through COPY; below, one INSERT ... unnest round trip.
COPY_THRESHOLD = 500


def copy_columns(statement: str) -> tuple[str, ...]:
    """The columns a `COPY table (a, b, ...) FROM STDIN` statement names."""
    found = re.search(r"\(([^)]*)\)", statement)
    if found is None:
        raise SqlLoadError(f"a COPY names no columns: {statement[:60]}")
    return tuple(column.strip() for column in found.group(1).split(","))


# psycopg runs email_copy; asyncpg writes its COPY from these same columns.
COPY_COLUMNS = copy_columns(QUERIES["email_copy"])


@dataclass(frozen=True, slots=True)
class _Fetch:
    query: LiteralString
    args: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class _Copy:
    records: Iterator[tuple[Any, ...]]


# One enqueue's statements, for either driver: the plan yields each step and is sent its rows.
_InsertPlan = Generator[_Fetch | _Copy, Sequence[Sequence[Any]], list[int]]


def _insert_plan(rows: Sequence[EmailRow]) -> _InsertPlan:
    """INSERT ... unnest below COPY_THRESHOLD rows; above, ids reserved and then one COPY.
    The ids come back in input order."""
    if len(rows) < COPY_THRESHOLD:
        inserted = yield _Fetch(QUERIES["email_insert"], email_insert_arguments(rows))
        return [int(r[0]) for r in inserted]
    reserved = yield _Fetch(QUERIES["email_reserve_ids"], (len(rows),))
    ids = [int(r[0]) for r in reserved]
    now = reserved[0][1]
    yield _Copy(email_copy_record(i, row, now) for i, row in zip(ids, rows, strict=True))
    return ids


def _advance(
    plan: _InsertPlan, result: Sequence[Sequence[Any]] | None
) -> _Fetch | _Copy | list[int]:
    """The plan's next step, or the ids once it is done."""
    try:
        return plan.send(result) if result is not None else next(plan)
    except StopIteration as done:
        return cast(list[int], done.value)


async def email_insert(conn: asyncpg.Connection, rows: Sequence[EmailRow]) -> list[int]:
    """Insert emails in the caller's transaction (or one of its own); ids in input order."""
    if not rows:
        return []
    if len(rows) >= COPY_THRESHOLD and not conn.is_in_transaction():
        async with conn.transaction():
            return await email_insert(conn, rows)
    plan = _insert_plan(rows)
    step = _advance(plan, None)
    while not isinstance(step, list):
        if isinstance(step, _Fetch):
            result: Sequence[Sequence[Any]] = await conn.fetch(step.query, *step.args)
        else:
            await conn.copy_records_to_table(
                "emails", schema_name="mailq", columns=COPY_COLUMNS, records=step.records
            )
            result = []
        step = _advance(plan, result)
    return step


async def email_insert_streamed(
    conn: asyncpg.Connection, count: int, rows: Iterator[EmailRow]
) -> list[int]:
    """Bulk enqueue of `count` rows that are checked while they are written: ids reserved,
    then one COPY fed by `rows` as it yields them, so that the checks of the next rows run
    while Postgres writes the ones before. In a transaction of its own, or a savepoint of
    the caller's. When `rows` raises (a refusal), the COPY ends early, what it wrote is
    rolled back and the refusal raised: nothing is written. Ids in input order."""
    async with conn.transaction():
        reserved = await conn.fetchrow(QUERIES["email_reserve_id_array"], count)
        ids: list[int] = sorted(reserved["ids"])  # in input order, as the claim takes them
        now: datetime = reserved["now"]
        refusal: list[Exception] = []

        def records() -> Iterator[tuple[Any, ...]]:
            try:
                for email_id, row in zip(ids, rows, strict=True):
                    yield email_copy_record(email_id, row, now)
            except Exception as exc:  # raised below, once the COPY has ended cleanly
                refusal.append(exc)

        await conn.copy_records_to_table(
            "emails", schema_name="mailq", columns=COPY_COLUMNS, records=records()
        )
        if refusal:
            raise refusal[0]
    return ids


def email_insert_sync(conn: psycopg.Connection[Any], rows: Sequence[EmailRow]) -> list[int]:
    """email_insert on a psycopg connection: in the caller's open transaction when there is
    one (a savepoint; the caller commits), else in one of its own, committed on return."""
    if not rows:
        return []
    with conn.transaction(), psycopg.RawCursor(conn) as cur:
        plan = _insert_plan(rows)
        step = _advance(plan, None)
        while not isinstance(step, list):
            if isinstance(step, _Fetch):
                cur.execute(step.query, step.args)
                result: Sequence[Sequence[Any]] = cur.fetchall()
            else:
                with cur.copy(QUERIES["email_copy"]) as copy:
                    for record in step.records:
                        copy.write_row(record)
                result = []
            step = _advance(plan, result)
        return step


def email_insert_arguments(rows: Sequence[EmailRow]) -> tuple[Any, ...]:
    """The parameters of email_insert (parallel arrays)."""
    return (
        [r.kind for r in rows],
        [r.priority for r in rows],
        [r.send_at for r in rows],
        [r.max_attempts for r in rows],
        [r.to_address for r in rows],
        [r.message_id for r in rows],
        [r.content for r in rows],
        [r.metadata for r in rows],
        list(range(len(rows))),
        None,
        # No names at all (the common case): a null array, which unnest pads with nulls.
        [r.to_name for r in rows] if any(r.to_name for r in rows) else None,
        [r.expires_at for r in rows],
    )


def email_copy_record(email_id: int, row: EmailRow, now: datetime) -> tuple[Any, ...]:
    """One row of the bulk-enqueue COPY, in COPY_COLUMNS order (due now unless scheduled)."""
    return (
        email_id,
        row.kind,
        row.priority,
        row.send_at or now,
        row.send_at,
        row.max_attempts,
        row.to_address,
        row.message_id,
        row.content,
        row.metadata,
        row.to_name,
        row.expires_at,
    )


class Applied(set[int]):
    """The ids of a batch of outcomes that are committed; `reconciled` are those among them
    that an earlier try of the batch had committed (its reply lost with the connection)."""

    def __init__(self, ids: Sequence[int] = (), reconciled: Sequence[int] = ()) -> None:
        super().__init__(ids)
        self.update(reconciled)
        self.reconciled = frozenset(reconciled)


async def email_finish(
    db: Executor,
    results: Sequence[AttemptResult],
    worker_id: uuid.UUID,
    now: datetime | None = None,
) -> Applied:
    """Write a batch of outcomes in one statement; returns the ids that are applied."""
    if not results:
        return Applied()
    columns = zip(
        *(
            (
                r.email.id,
                r.email.attempt,
                r.outcome.value,
                r.started_at,
                r.smtp_code,
                r.smtp_reply,
                r.error,
                r.retry_in_s,
                r.provider_message_id,
            )
            for r in results
        ),
        strict=True,
    )
    *outcomes, provider_ids = map(list, columns)
    rows = await db.fetch(QUERIES["email_finish"], *outcomes, worker_id, now, provider_ids)
    applied = [r[0] for r in rows]
    if len(applied) == len(results):
        return Applied(applied)
    done = set(applied)
    missing = [r for r in results if r.email.id not in done]
    recorded = await db.fetch(
        QUERIES["email_outcomes_recorded"],
        [r.email.id for r in missing],
        [r.email.attempt for r in missing],
        [r.outcome.value for r in missing],
        worker_id,
    )
    return Applied(applied, [r[0] for r in recorded])


async def email_release(
    db: Executor, emails: Sequence[ClaimedEmail], worker_id: uuid.UUID
) -> set[int]:
    if not emails:
        return set()
    rows = await db.fetch(
        QUERIES["email_release"],
        [e.id for e in emails],
        worker_id,
        [e.attempt for e in emails],
    )
    return {r["id"] for r in rows}


async def email_release_orphans(
    db: Executor, worker_id: uuid.UUID, held: Sequence[int]
) -> list[int]:
    rows = await db.fetch(QUERIES["email_release_orphans"], worker_id, list(held))
    return [r["id"] for r in rows]


async def email_rescue_expired(
    db: Executor, limit: int, now: datetime | None = None, grace_s: float = 0.0
) -> list[int]:
    """Take back emails of workers whose lease expired more than `grace_s` before `now`."""
    rows = await db.fetch(QUERIES["email_rescue_expired"], limit, now, grace_s)
    return [r["id"] for r in rows]


async def email_cancel(db: Executor, ids: Sequence[int], reason: str) -> list[int]:
    rows = await db.fetch(QUERIES["email_cancel"], list(ids), reason, None)
    return [r["id"] for r in rows]


async def email_retry(db: Executor, ids: Sequence[int]) -> list[int]:
    rows = await db.fetch(QUERIES["email_retry"], list(ids), None)
    return [r["id"] for r in rows]


async def email_get(db: Executor, email_id: int) -> dict[str, Any] | None:
    row = await db.fetchrow(QUERIES["email_get"], email_id)
    return None if row is None else dict(row)


async def email_attempts(db: Executor, email_id: int) -> list[dict[str, Any]]:
    return [dict(r) for r in await db.fetch(QUERIES["email_attempts"], email_id)]


async def email_delete_finished(db: Executor, before: datetime, limit: int) -> int:
    return len(await db.fetch(QUERIES["email_delete_finished"], before, limit))


async def email_count_by_state(db: Executor) -> list[dict[str, Any]]:
    return [dict(r) for r in await db.fetch(QUERIES["email_count_by_state"])]


async def email_states(db: Executor, ids: Sequence[int]) -> dict[int, str]:
    rows = await db.fetch(QUERIES["email_states"], list(ids))
    return {r["id"]: r["state"] for r in rows}


async def email_retry_failed(
    db: Executor,
    kind: str | None,
    since: datetime | None,
    until: datetime,
    limit: int,
    now: datetime | None = None,
) -> list[int]:
    rows = await db.fetch(QUERIES["email_retry_failed"], kind, since, limit, until, now)
    return [r["id"] for r in rows]


async def email_list_pending(db: Executor, kind: str | None, limit: int) -> list[dict[str, Any]]:
    return [dict(r) for r in await db.fetch(QUERIES["email_list_pending"], kind, limit)]


async def email_list_failed(
    db: Executor, kind: str | None, since: datetime | None, limit: int
) -> list[dict[str, Any]]:
    return [dict(r) for r in await db.fetch(QUERIES["email_list_failed"], kind, since, limit)]


async def email_count_finished_before(db: Executor, before: datetime) -> int:
    return int(await db.fetchval(QUERIES["email_count_finished_before"], before))


async def email_find_by_metadata(
    db: Executor, candidates: Sequence[str] | None, limit: int, before_id: int | None
) -> list[dict[str, Any]]:
    """Emails whose metadata contains one of the JSON objects `candidates` (None: any email),
    newest first, ids below `before_id`."""
    rows = await db.fetch(
        QUERIES["email_find_by_metadata"],
        None if candidates is None else list(candidates),
        limit,
        before_id,
    )
    return [dict(r) for r in rows]


async def email_sent_recently(db: Executor, seconds: float) -> dict[str, int]:
    rows = await db.fetch(QUERIES["email_sent_recently"], seconds, None)
    return {r["kind"]: r["sent"] for r in rows}


async def email_cancel_by_address(db: Executor, addresses: Sequence[str], reason: str) -> int:
    """Cancel waiting and unknown emails to these lower-case addresses; returns how many."""
    if not addresses:
        return 0
    return len(await db.fetch(QUERIES["email_cancel_by_address"], list(addresses), reason, None))


async def email_still_held(
    db: Executor, worker_id: uuid.UUID, emails: Sequence[ClaimedEmail]
) -> set[tuple[int, int]]:
    """Which of these claims of the worker its attempts still hold: (email id, attempt)."""
    if not emails:
        return set()
    rows = await db.fetch(
        QUERIES["email_still_held"], worker_id, [e.id for e in emails], [e.attempt for e in emails]
    )
    return {(r["id"], r["attempt"]) for r in rows}


async def email_mark_data_started(
    db: Executor, email_id: int, worker_id: uuid.UUID, attempt: int
) -> bool:
    """Record that SMTP DATA begins for this attempt; False if the attempt no longer holds it."""
    row = await db.fetchval(QUERIES["email_mark_data_started"], email_id, worker_id, attempt)
    return row is not None


async def email_mark_sent(db: Executor, ids: Sequence[int]) -> list[int]:
    rows = await db.fetch(QUERIES["email_mark_sent"], list(ids), None)
    return [r["id"] for r in rows]
