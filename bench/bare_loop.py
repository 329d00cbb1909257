"""The ceiling: a bare SQL loop on one asyncpg connection that claims a batch of rows with
SKIP LOCKED and marks them done, until none is left.

`python -m mailq.bench.bare_loop --batch 100` with MAILQ_BENCH_DATABASE_URL set. It connects,
prints "ready", waits for a line on stdin (so that every process starts at the same moment),
drains, prints how many rows it handled, and exits when stdin closes (so the bench can read
the CPU time of this process and of its server process first).

`--ahead` is the ceiling under mailq's default bound (`--batch 16`): a worker may hold only
`concurrency` emails whose outcome is not committed, and claims the next ones on another
connection while those commit. So the loop marks at most one batch done per commit, and a
second connection claims the next batch meanwhile (one batch waiting at most, as mailq's
claim-ahead holds its free slots' worth).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

import asyncpg

from bench.sql import BENCH_QUERIES

DSN_VARIABLE = "MAILQ_BENCH_DATABASE_URL"


async def _serial(conn: asyncpg.Connection, batch: int) -> int:
    claim = await conn.prepare(BENCH_QUERIES["bench_jobs_claim"])
    done = await conn.prepare(BENCH_QUERIES["bench_jobs_done"])
    await _ready()
    handled = 0
    while rows := await claim.fetch(batch):
        await done.fetch([r["id"] for r in rows])
        handled += len(rows)
    return handled


async def _ahead(claimer: asyncpg.Connection, finisher: asyncpg.Connection, batch: int) -> int:
    claim = await claimer.prepare(BENCH_QUERIES["bench_jobs_claim"])
    done = await finisher.prepare(BENCH_QUERIES["bench_jobs_done"])
    claimed: asyncio.Queue[list[asyncpg.Record]] = asyncio.Queue(maxsize=1)

    async def claim_ahead() -> None:
        try:
            while rows := await claim.fetch(batch):
                await claimed.put(rows)
        finally:
            await claimed.put([])  # the end, or a failed claim: `await claiming` raises it

    await _ready()
    handled = 0
    claiming = asyncio.create_task(claim_ahead())
    while rows := await claimed.get():
        await done.fetch([r["id"] for r in rows])
        handled += len(rows)
    await claiming
    return handled


async def _ready() -> None:
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)


async def drain(dsn: str, batch: int, ahead: bool) -> int:
    """Drain, print the count, and stay connected until stdin closes (the bench reads the
    CPU time of the server processes serving these connections first)."""
    conns = [await asyncpg.connect(dsn) for _ in range(2 if ahead else 1)]
    try:
        handled = await (_ahead(conns[0], conns[1], batch) if ahead else _serial(conns[0], batch))
        print(handled, flush=True)
        while await asyncio.to_thread(sys.stdin.readline):
            pass
        return handled
    finally:
        for conn in conns:
            await conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m mailq.bench.bare_loop")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument(
        "--ahead", action="store_true", help="claim the next batch while one commits"
    )
    args = parser.parse_args()
    dsn = os.environ.get(DSN_VARIABLE)
    if not dsn:
        print(f"{DSN_VARIABLE} is not set", file=sys.stderr)
        return 2
    asyncio.run(drain(dsn, args.batch, args.ahead))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
