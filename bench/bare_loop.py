"""The ceiling: a bare SQL loop on one asyncpg connection that claims a batch of rows with
SKIP LOCKED and marks them done, until none is left.

`python -m mailq.bench.bare_loop --batch 100` with MAILQ_BENCH_DATABASE_URL set. It connects,
prints "ready", waits for a line on stdin (so that every process starts at the same moment),
drains, prints how many rows it handled, and exits when stdin closes (so the bench can read
the CPU time of this process and of its server process first).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

import asyncpg

from bench.sql import BENCH_QUERIES

DSN_VARIABLE = "MAILQ_BENCH_DATABASE_URL"


async def drain(dsn: str, batch: int) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        claim = await conn.prepare(BENCH_QUERIES["bench_jobs_claim"])
        done = await conn.prepare(BENCH_QUERIES["bench_jobs_done"])
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        handled = 0
        while True:
            rows = await claim.fetch(batch)
            if not rows:
                break
            await done.fetch([r["id"] for r in rows])
            handled += len(rows)
        print(handled, flush=True)
        while await asyncio.to_thread(sys.stdin.readline):
            pass
        return handled
    finally:
        await conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m mailq.bench.bare_loop")
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args()
    dsn = os.environ.get(DSN_VARIABLE)
    if not dsn:
        print(f"{DSN_VARIABLE} is not set", file=sys.stderr)
        return 2
    asyncio.run(drain(dsn, args.batch))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
