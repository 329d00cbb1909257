"""The PgQueuer adapter of the bench (see mailq/bench/peer_common.py for its commands).

`python -m mailq.bench.peer_pgqueuer worker --batch 100 --seen FILE`: a QueueManager on one
asyncpg connection (PgQueuer's own asyncpg driver) with one no-op entrypoint; `--batch` is
QueueManager.run's batch_size (PgQueuer's default is 10).
"""

from __future__ import annotations

import asyncio
import time
from argparse import Namespace

import asyncpg
from pgqueuer import AsyncpgDriver, Job, Queries, QueueManager

from bench.peer_common import (
    Seen,
    dsn,
    emit,
    pace,
    parser,
    payload_bytes,
    timed,
    until_stdin_closes,
    write_ids,
)

ENTRYPOINT = "noop"


async def _bulk(queries: Queries, count: int) -> list[int]:
    return list(
        await queries.enqueue(
            [ENTRYPOINT] * count, [payload_bytes(n) for n in range(count)], [0] * count
        )
    )


async def _one(queries: Queries, n: int) -> int:
    (job_id,) = await queries.enqueue(ENTRYPOINT, payload_bytes(n))
    return int(job_id)


async def worker(url: str, args: Namespace) -> None:
    conn = await asyncpg.connect(url)
    qm = QueueManager(Queries(AsyncpgDriver(conn)))
    seen = Seen()

    @qm.entrypoint(ENTRYPOINT)  # type: ignore[untyped-decorator,unused-ignore]
    async def noop(job: Job) -> None:
        seen.record(int(job.id))

    run = asyncio.create_task(qm.run(batch_size=args.batch))
    print("ready", flush=True)
    stop = asyncio.create_task(until_stdin_closes())
    await asyncio.wait({run, stop}, return_when=asyncio.FIRST_COMPLETED)
    qm.shutdown.set()
    await run
    stop.cancel()
    seen.write(args.seen)


async def main(args: Namespace) -> None:
    url = dsn()
    if args.role == "worker":
        await worker(url, args)
        return
    conn = await asyncpg.connect(url)
    try:
        queries = Queries(AsyncpgDriver(conn))
        if args.role == "install":
            await queries.install()
        elif args.role == "enqueue-bulk":
            seconds = await timed(lambda: _bulk(queries, args.count))
            emit(count=args.count, seconds=seconds)
        elif args.role == "enqueue-one":

            async def each() -> None:
                for n in range(args.count):
                    await _one(queries, n)

            emit(count=args.count, seconds=await timed(each))
        elif args.role == "fill":
            ids = await _bulk(queries, args.count)
            returned_at = time.time()
            write_ids(args.out, ids)
            emit(count=len(ids), returned_at=returned_at)
        elif args.role == "paced":
            lines = await pace(args.count, args.rate, lambda n: _one(queries, n))
            args.out.write_text(lines, encoding="ascii")
    finally:
        await conn.close()


if __name__ == "__main__":
    asyncio.run(main(parser("python -m mailq.bench.peer_pgqueuer").parse_args()))
