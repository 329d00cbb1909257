"""The narrow hot row, measured: mailq's emails table as it is (A) against the same database
with the content, metadata, Message-ID and display name moved to a table of their own (B:
`mailq.email_bodies`, their indexes with them; the claim joins it for what it returns).

Two databases of N waiting bench emails each; B is split after the fill. Then rounds of
claim 100 + outcome 100 (mailq's own statements; B's claim reads the moved columns from
the bodies table), the databases alternating, and rounds of inserting 10,000 emails (A: one
INSERT; B: the state row and the body, in one statement). Reported per email: the CPU of the
Postgres process serving the connection (from /proc: run on the database's host) and the
WAL. Run from a checkout with its venv, with the server at 127.0.0.1:5432:

    .venv/bin/python docs/bench/narrow_row_ab.py [EMAILS] > results.json
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg

from bench import workload
from mailq.db.emails import email_finish
from mailq.db.queries import QUERIES
from mailq.db.schema import migrate
from mailq.enqueue import enqueue
from mailq.models import AttemptResult, ClaimedEmail, Outcome

SERVER = "postgresql://postgres@127.0.0.1:5432/"
NAMES = {"wide": "mailq_narrow_ab_wide", "narrow": "mailq_narrow_ab_narrow"}
BATCH = 100
INSERTS = 10_000

SPLIT = (
    "DROP VIEW IF EXISTS mailq.queue_stats, mailq.pending, mailq.failed,"
    " mailq.campaign_progress, mailq.bounces CASCADE",
    "CREATE TABLE mailq.email_bodies AS"
    " SELECT id, message_id, content, metadata, to_name FROM mailq.emails",
    "ALTER TABLE mailq.email_bodies ADD PRIMARY KEY (id)",
    "CREATE INDEX ON mailq.email_bodies USING gin (metadata jsonb_path_ops)"
    " WHERE metadata <> '{}'::jsonb",
    'CREATE INDEX ON mailq.email_bodies (message_id COLLATE "C")',
    "ALTER TABLE mailq.emails DROP COLUMN message_id CASCADE, DROP COLUMN content CASCADE,"
    " DROP COLUMN metadata CASCADE, DROP COLUMN to_name CASCADE",
    "VACUUM FULL mailq.emails",
)
INSERT = {
    "wide": "INSERT INTO mailq.emails (kind, run_at, to_address, message_id, content, metadata)"
    " SELECT 'welcome', now() + interval '100 years', 'new' || g || '@example.com',"
    " '<' || md5(g::text) || '@example.com>', $2::jsonb, '{\"user_id\": 1}'"
    " FROM generate_series(1, $1::integer) AS g",
    "narrow": "WITH s AS (INSERT INTO mailq.emails (kind, run_at, to_address)"
    " SELECT 'welcome', now() + interval '100 years', 'new' || g || '@example.com'"
    " FROM generate_series(1, $1::integer) AS g RETURNING id)"
    " INSERT INTO mailq.email_bodies (id, message_id, content, metadata)"
    " SELECT id, '<' || md5(id::text) || '@example.com>', $2::jsonb, '{\"user_id\": 1}' FROM s",
}


def narrow_claim() -> str:
    claim = QUERIES["email_claim_due"]
    for old, new in (
        (
            "FROM picked\nWHERE e.id = picked.id",
            "FROM picked JOIN mailq.email_bodies AS b ON b.id = picked.id\nWHERE e.id = picked.id",
        ),
        ("e.to_name,\n          e.message_id,", "b.to_name,\n          b.message_id,"),
        ("e.content::text", "b.content::text"),
        ("|| e.content)::text", "|| b.content)::text"),
    ):
        if old not in claim:
            raise SystemExit(f"the claim statement changed: {old!r} is not in it")
        claim = claim.replace(old, new)
    return claim


def cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0


class Side:
    def __init__(self, conn: asyncpg.Connection, kind: str, worker: uuid.UUID, pid: int) -> None:
        self.conn, self.kind, self.worker, self.pid = conn, kind, worker, pid
        self.claim = narrow_claim() if kind == "narrow" else QUERIES["email_claim_due"]
        self.start: tuple[Any, Any] = (None, None)
        self.drain: list[dict[str, float]] = []
        self.insert: list[dict[str, float]] = []

    async def measured(self, work: Any) -> dict[str, float] | None:
        lsn = await self.conn.fetchval("SELECT pg_current_wal_lsn()")
        cpu, began = cpu_s(self.pid), time.perf_counter()
        count = await work()
        seconds, cpu = time.perf_counter() - began, cpu_s(self.pid) - cpu
        wal = await self.conn.fetchval("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1)", lsn)
        if not count:
            return None
        return {
            "server_cpu_us": cpu / count * 1e6,
            "us": seconds / count * 1e6,
            "wal_bytes": float(wal) / count,
        }

    async def rounds(self, count: int) -> int:
        done = 0
        for _ in range(count):
            run_at, last = self.start
            rows = await self.conn.fetch(
                self.claim, ["welcome"], [BATCH], self.worker, None, BATCH, None,
                None if run_at is None else [run_at], None if last is None else [last],
            )  # fmt: skip
            if not rows:
                break
            self.start = max((r["run_at"], r["id"]) for r in rows)
            now = datetime.now(UTC)
            results = [
                AttemptResult(ClaimedEmail.from_row(r), Outcome.SENT, now, 250, "ok") for r in rows
            ]
            await email_finish(self.conn, results, self.worker)
            done += len(rows)
        return done

    async def inserted(self) -> int:
        await self.conn.execute(INSERT[self.kind], INSERTS, workload.payload())
        return INSERTS


async def prepared(kind: str, emails: int) -> Side:
    name = NAMES[kind]
    admin = await asyncpg.connect(SERVER + "postgres")
    await admin.execute(f"DROP DATABASE IF EXISTS {name}")
    await admin.execute(f"CREATE DATABASE {name}")
    await admin.close()
    migrate(SERVER + name)
    conn = await asyncpg.connect(SERVER + name)
    await enqueue(conn, *workload.emails(emails), default_from="bench@example.com")
    if kind == "narrow":
        for statement in SPLIT:
            await conn.execute(statement)
    await conn.execute("VACUUM ANALYZE")
    await conn.execute("CHECKPOINT")
    worker = uuid.uuid4()
    await conn.execute(
        "INSERT INTO mailq.worker_leases (id, hostname, pid, kinds, concurrency,"
        " lease_expires_at) VALUES ($1, 'bench', 1, '{welcome}', 200, 'infinity')",
        worker,
    )
    return Side(conn, kind, worker, await conn.fetchval("SELECT pg_backend_pid()"))


def medians(samples: list[dict[str, float]]) -> dict[str, float]:
    return {k: round(statistics.median(s[k] for s in samples), 1) for k in samples[0]}


async def main(emails: int) -> None:
    sides = [await prepared("wide", emails), await prepared("narrow", emails)]
    per_round = emails // BATCH // 12
    try:
        for at in range(11):
            for side in sides if at % 2 else sides[::-1]:
                drained = await side.measured(lambda s=side: s.rounds(per_round))
                if drained is not None:
                    side.drain.append(drained)
                if at % 4 == 1 and (row := await side.measured(side.inserted)) is not None:
                    side.insert.append(row)
        report = {
            "emails": emails,
            "batch": BATCH,
            "sides": {
                s.kind: {"claim_and_outcome": medians(s.drain), "insert": medians(s.insert)}
                for s in sides
            },
        }
    finally:
        admin = await asyncpg.connect(SERVER + "postgres")
        for side in sides:
            await side.conn.close()
        for name in NAMES.values():
            await admin.execute(f"DROP DATABASE IF EXISTS {name}")
        await admin.close()
    json.dump(report, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 120_000))
