"""Wake-up latency: idle workers (fallback poll an hour away), emails enqueued one at a time
at a steady pace; the latency of each is from the enqueue call's return (the bench's clock,
read right after the commit) to the start of its send (attempts.started_at, the worker's
clock, read right before it builds the message). Both clocks are this host's."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import asyncpg

from bench import workload
from bench.databases import BenchError
from bench.drain import wait_finished, wait_registered
from bench.plan import MAILQ, Context, Measurement, Sample
from bench.processes import child_env, log_tail, process_group, worker_argv
from bench.sql import BENCH_QUERIES
from bench.stats import percentile
from mailq.enqueue import enqueue

IDLE_POLL_S = 3600
WORKER_CONCURRENCY = 16


async def mailq_wakeup(ctx: Context) -> Sample:
    count = ctx.options.wakeup_emails
    interval = 1.0 / ctx.options.wakeup_rate
    workers = ctx.options.wakeup_workers
    log = ctx.logs / "wakeup-mailq.log"
    returned: dict[int, datetime] = {}
    async with ctx.server.fresh_database("wake") as url:
        conn = await asyncpg.connect(url)
        try:
            env = child_env(
                ctx.env, database_url=url, backend="null://", poll_interval=str(IDLE_POLL_S)
            )
            async with process_group(log) as group:
                await group.start(worker_argv(WORKER_CONCURRENCY), env, count=workers)
                await wait_registered(conn, group, workers)
                start = time.monotonic()
                for n in range(count):
                    delay = start + n * interval - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    (email_id,) = await enqueue(conn, *workload.emails(1))
                    returned[email_id] = datetime.now(UTC)
                finished = await wait_finished(conn, group, count)
                codes = await group.stop()
            if any(codes):
                raise BenchError(f"workers exited with {codes}:\n{log_tail(log)}")
            started = await conn.fetch(BENCH_QUERIES["bench_emails_started"])
            row = await conn.fetchrow(BENCH_QUERIES["bench_emails_result"])
        finally:
            await conn.close()
    latencies = sorted(
        (r["started_at"] - returned[r["email_id"]]).total_seconds() * 1000.0
        for r in started
        if r["email_id"] in returned
    )
    if not latencies:
        raise BenchError(f"no email was sent in the wake-up run:\n{log_tail(log)}")
    return Sample(
        {
            "p50_ms": percentile(latencies, 50),
            "p95_ms": percentile(latencies, 95),
            "p99_ms": percentile(latencies, 99),
            "max_ms": latencies[-1],
        },
        counts={"duplicates": int(row["duplicates"]), "lost": int(row["lost"])},
        details={
            "emails": count,
            "rate_per_s": ctx.options.wakeup_rate,
            "workers": workers,
            "min_ms": latencies[0],
            "mean_ms": sum(latencies) / len(latencies),
            "latencies_ms": [round(x, 3) for x in latencies],
            "timed_out": not finished,
        },
    )


def measurements(count: int, rate: float, workers: int) -> tuple[Measurement, ...]:
    return (
        Measurement(
            "wakeup/mailq",
            "wakeup",
            MAILQ,
            "ms",
            {"emails": count, "rate_per_s": rate, "workers": workers, "poll_s": IDLE_POLL_S},
            mailq_wakeup,
            headline="p99_ms",
        ),
    )
