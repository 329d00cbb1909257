"""The Procrastinate adapter of the bench (see mailq/bench/peer_common.py for its commands).

One App on Procrastinate's psycopg connector; one no-op task (pass_context, to record the job
id) on queue "bench". `worker --concurrency C` is run_worker_async(concurrency=C) with
LISTEN/NOTIFY on (its default); jobs are kept after they succeed (delete_jobs="never", its
default), so that their events say when each finished.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from argparse import Namespace
from typing import Any

import procrastinate

from bench.peer_common import (
    Seen,
    dsn,
    emit,
    pace,
    parser,
    payload,
    timed,
    until_stdin_closes,
    write_ids,
)

QUEUE = "bench"


def make_app(url: str, pool_size: int) -> tuple[procrastinate.App, Any, Seen]:
    app = procrastinate.App(
        connector=procrastinate.PsycopgConnector(
            conninfo=url, min_size=1, max_size=max(2, pool_size)
        )
    )
    seen = Seen()

    @app.task(name="noop", queue=QUEUE, pass_context=True)  # type: ignore[untyped-decorator,unused-ignore]
    async def noop(context: procrastinate.JobContext, /, **_: Any) -> None:
        assert context.job.id is not None
        seen.record(int(context.job.id))

    return app, noop, seen


async def worker(url: str, args: Namespace) -> None:
    app, _, seen = make_app(url, args.concurrency + 2)
    async with app.open_async():
        run = asyncio.create_task(
            app.run_worker_async(
                queues=[QUEUE],
                concurrency=args.concurrency,
                wait=True,
                install_signal_handlers=False,
            )
        )
        print("ready", flush=True)
        stop = asyncio.create_task(until_stdin_closes())
        await asyncio.wait({run, stop}, return_when=asyncio.FIRST_COMPLETED)
        run.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await run
        stop.cancel()
    seen.write(args.seen)


async def main(args: Namespace) -> None:
    url = dsn()
    if args.role == "worker":
        await worker(url, args)
        return
    app, noop, _ = make_app(url, 2)
    async with app.open_async():
        if args.role == "install":
            await app.schema_manager.apply_schema_async()
        elif args.role == "enqueue-bulk":
            jobs = [{"payload": payload(n)} for n in range(args.count)]
            seconds = await timed(lambda: noop.batch_defer_async(*jobs))
            emit(count=args.count, seconds=seconds)
        elif args.role == "enqueue-one":

            async def each() -> None:
                for n in range(args.count):
                    await noop.defer_async(payload=payload(n))

            emit(count=args.count, seconds=await timed(each))
        elif args.role == "fill":
            ids = await noop.batch_defer_async(
                *({"payload": payload(n)} for n in range(args.count))
            )
            returned_at = time.time()
            write_ids(args.out, ids)
            emit(count=len(ids), returned_at=returned_at)
        elif args.role == "paced":

            async def one(n: int) -> int:
                return int(await noop.defer_async(payload=payload(n)))

            args.out.write_text(await pace(args.count, args.rate, one), encoding="ascii")


if __name__ == "__main__":
    asyncio.run(main(parser("python -m mailq.bench.peer_procrastinate").parse_args()))
