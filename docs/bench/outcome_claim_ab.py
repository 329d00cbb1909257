"""A worker's round side by side: the outcome statement of a batch and the claim that refills
it as two statements on two connections at once (as the worker does) against one statement
that does both (the outcome statement's CTEs followed by the claim's), rounds alternating in
blocks, with the round's time, the client's CPU and the two Postgres backends' CPU.

With `--small-content` the emails carry a one-letter subject and body instead of the bench's
welcome email, so the rows are about half as wide: what the width of the row costs each
state change. Run from a checkout with its venv, against a server where it may create and
drop a database:

    .venv/bin/python docs/bench/outcome_claim_ab.py BATCH ROUNDS BLOCKS [--small-content]
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from mailq.db.queries import QUERIES
from mailq.db.schema import migrate
from mailq.enqueue import enqueue
from mailq.models import Email

# The emails of `mailq bench` (the checkout's bench package, which is not installed).
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from bench import workload

SERVER = "postgresql://postgres@127.0.0.1:5432"
NAME = "mailq_outcome_claim_ab"
FINISH = QUERIES["email_finish"].strip().rstrip(";")
CLAIM = QUERIES["email_claim_due"].strip().rstrip(";")
FINISH_PARAMS = 11


def merged_sql() -> str:
    """The outcome statement and the claim in one: the claim's parameters renumbered after
    the outcome's, its CTEs appended, and one result: the applied and reconciled ids as
    arrays on every row, with the claimed emails (one row of nulls when none)."""
    head, tail = FINISH.split("\nSELECT id, false AS reconciled FROM applied")
    reconciled = re.sub(r"^--.*\n", "", tail.split("UNION ALL", 1)[1].strip(), flags=re.M)
    reconciled = reconciled.replace("SELECT r.id, true FROM", "SELECT array_agg(r.id) FROM")
    claim = re.sub(r"\$(\d+)", lambda m: f"${int(m.group(1)) + FINISH_PARAMS}", CLAIM)
    claim = claim.replace("WITH wanted AS (", ",\nwanted AS (", 1)
    body, update = claim.split("\nUPDATE mailq.emails AS e", 1)
    return (
        f"{head}{body}\n, claimed AS (UPDATE mailq.emails AS e{update})\n"
        f"SELECT (SELECT array_agg(id) FROM applied) AS applied_ids, ({reconciled}) "
        "AS reconciled_ids, c.* FROM (SELECT 1) AS one LEFT JOIN claimed AS c ON true"
    )


def outcome_args(rows: list[asyncpg.Record], worker_id: uuid.UUID) -> tuple[Any, ...]:
    n = len(rows)
    return (
        [r["id"] for r in rows],
        [r["attempts"] for r in rows],
        ["sent"] * n,
        [datetime.now(UTC)] * n,
        [250] * n,
        ["ok"] * n,
        [None] * n,
        [None] * n,
        worker_id,
        None,
        [None] * n,
    )


def claim_args(n: int, worker_id: uuid.UUID) -> tuple[Any, ...]:
    return (["welcome"], [n], worker_id, None, n, "null://", None, None)


def backend_cpu_s(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


async def measure(batch: int, rounds: int, blocks: int, small: bool) -> dict[str, Any]:
    url = f"{SERVER}/{NAME}"
    await asyncio.to_thread(migrate, url)
    one, two = await asyncpg.connect(url), await asyncpg.connect(url)
    worker_id = uuid.uuid4()
    await one.execute(
        "INSERT INTO mailq.worker_leases (id, hostname, pid, kinds, concurrency, "
        "lease_expires_at) VALUES ($1, 'ab', 0, '{welcome}', $2, now() + interval '1 hour')",
        worker_id,
        batch,
    )
    count = batch * (rounds * blocks * 2 + 2 * blocks + 4)
    emails = (
        [Email(to=f"r{i}@example.com", kind="welcome", subject="s", text="t") for i in range(count)]
        if small
        else workload.emails(count)
    )
    await enqueue(one, *emails)
    row_bytes = await one.fetchval("SELECT avg(pg_column_size(e.*))::float8 FROM mailq.emails e")
    pids = [await c.fetchval("SELECT pg_backend_pid()") for c in (one, two)]
    merged = merged_sql()
    blocks_of: dict[str, list[dict[str, float]]] = {"separate": [], "merged": []}
    for _ in range(blocks):
        for mode, block in blocks_of.items():
            held = await one.fetch(QUERIES["email_claim_due"], *claim_args(batch, worker_id))
            server, client, began = backend_cpu_s(pids), time.process_time(), time.perf_counter()
            for _ in range(rounds):
                if mode == "separate":
                    _, held = await asyncio.gather(
                        one.fetch(FINISH, *outcome_args(held, worker_id)),
                        two.fetch(QUERIES["email_claim_due"], *claim_args(batch, worker_id)),
                    )
                else:
                    rows = await one.fetch(
                        merged, *outcome_args(held, worker_id), *claim_args(batch, worker_id)
                    )
                    if len(rows[0]["applied_ids"] or []) != len(held):
                        raise RuntimeError("the merged statement did not apply every outcome")
                    held = [r for r in rows if r["id"] is not None]
                if len(held) != batch:
                    raise RuntimeError(f"claimed {len(held)} of {batch}")
            block.append(
                {
                    "round_ms": (time.perf_counter() - began) / rounds * 1e3,
                    "client_cpu_ms": (time.process_time() - client) / rounds * 1e3,
                    "postgres_cpu_ms": (backend_cpu_s(pids) - server) / rounds * 1e3,
                }
            )
            await one.fetch(FINISH, *outcome_args(held, worker_id))
    await one.close()
    await two.close()
    return {"batch": batch, "rounds": rounds, "row_bytes": round(row_bytes), **blocks_of}


async def main(batch: int, rounds: int, blocks: int, small: bool) -> None:
    admin = await asyncpg.connect(f"{SERVER}/postgres")
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {NAME}")
        await admin.execute(f"CREATE DATABASE {NAME}")
        result = await measure(batch, rounds, blocks, small)
        print(json.dumps(result, indent=2))
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {NAME}")
        await admin.close()


if __name__ == "__main__":
    numbers = [int(a) for a in sys.argv[1:4]]
    if len(numbers) != 3:
        raise SystemExit(__doc__)
    asyncio.run(main(*numbers, small="--small-content" in sys.argv[4:]))
