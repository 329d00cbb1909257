"""Where a worker's round goes at a given concurrency: one worker, in this process, drains
EMAILS emails (null backend) from a fresh database, with the claim and the outcome statements
timed from the worker's side; then, on an idle connection, the outcome statement of a batch
of that size alone, without a claim beside it.

At the default concurrency (16) a worker may have only 16 sends whose outcome is not
committed, so its rate is 16 emails per round of outcome statement and sends: this shows how
long the statement takes beside the claim that refills the buffer and alone. Run from a
checkout with its venv, against a server where it may create and drop a database:

    .venv/bin/python docs/bench/default_settings_rounds.py [CONCURRENCY] [EMAILS] > rounds.json
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from mailq.db.queries import QUERIES
from mailq.db.schema import migrate
from mailq.delivery.local import NullSender
from mailq.enqueue import enqueue
from mailq.settings import Settings
from mailq.worker import claimer, recorder
from mailq.worker.worker import Worker

# The emails of `mailq bench` (the checkout's bench package, which is not installed).
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from bench import workload

SERVER = "postgresql://postgres@127.0.0.1:5432"
NAME = "mailq_default_settings_rounds"
ALONE_ROUNDS = 60


def timed(
    calls: list[float], statement: Callable[..., Awaitable[Any]]
) -> Callable[..., Awaitable[Any]]:
    async def run(*args: Any, **kwargs: Any) -> Any:
        began = time.perf_counter()
        try:
            return await statement(*args, **kwargs)
        finally:
            calls.append(time.perf_counter() - began)

    return run


def ms(seconds: list[float]) -> dict[str, float]:
    ordered = sorted(seconds)
    return {
        "median_ms": round(statistics.median(ordered) * 1e3, 3),
        "p90_ms": round(ordered[int(len(ordered) * 0.9)] * 1e3, 3),
        "count": len(ordered),
    }


async def drain(url: str, concurrency: int, emails: int) -> dict[str, Any]:
    finishes: list[float] = []
    claims: list[float] = []
    recorder.email_finish = timed(finishes, recorder.email_finish)  # type: ignore[assignment]
    claimer.email_claim_due = timed(claims, claimer.email_claim_due)  # type: ignore[assignment]
    conn = await asyncpg.connect(url)
    try:
        await enqueue(conn, *workload.emails(emails))
    finally:
        await conn.close()
    worker = Worker(Settings(database_url=url, concurrency=concurrency), NullSender())
    began, cpu = time.perf_counter(), time.process_time()
    await worker.run(until_empty=True)
    seconds = time.perf_counter() - began
    return {
        "rate": round(emails / seconds),
        "worker_cpu_us_per_email": round((time.process_time() - cpu) / emails * 1e6, 1),
        "outcome_statement_in_drain": ms(finishes),
        "claim_statement_in_drain": ms(claims),
    }


async def outcome_alone(url: str, batch: int) -> dict[str, float]:
    """Claim `batch`, then time their outcome statement, ALONE_ROUNDS times, one at a time."""
    conn = await asyncpg.connect(url)
    worker_id = uuid.uuid4()
    try:
        await conn.execute(
            "INSERT INTO mailq.worker_leases (id, hostname, pid, kinds, concurrency, "
            "lease_expires_at) VALUES ($1, 'rounds', 0, '{welcome}', $2, "
            "now() + interval '1 hour')",
            worker_id,
            batch,
        )
        await enqueue(conn, *workload.emails(batch * ALONE_ROUNDS))
        seconds = []
        for _ in range(ALONE_ROUNDS):
            rows = await conn.fetch(
                QUERIES["email_claim_due"],
                ["welcome"],
                [batch],
                worker_id,
                None,
                batch,
                "null://",
                None,
                None,
            )
            n = len(rows)
            began = time.perf_counter()
            await conn.fetch(
                QUERIES["email_finish"],
                [r["id"] for r in rows],
                [r["attempts"] for r in rows],
                ["sent"] * n,
                [datetime.now(UTC)] * n,
                [250] * n,
                ["discarded"] * n,
                [None] * n,
                [None] * n,
                worker_id,
                None,
                [None] * n,
            )
            seconds.append(time.perf_counter() - began)
    finally:
        await conn.close()
    return ms(seconds[10:])  # the first ones plan the statement and warm the cache


async def main(concurrency: int, emails: int) -> None:
    admin = await asyncpg.connect(f"{SERVER}/postgres")
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {NAME}")
        await admin.execute(f"CREATE DATABASE {NAME}")
        url = f"{SERVER}/{NAME}"
        await asyncio.to_thread(migrate, url)
        result = await drain(url, concurrency, emails)
        result["outcome_statement_alone"] = await outcome_alone(url, concurrency)
        result["concurrency"], result["emails"] = concurrency, emails
        print(json.dumps(result, indent=2))
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {NAME}")
        await admin.close()


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:3]]
    asyncio.run(main(*(args + [16, 30_000][len(args) :])))
