"""Drain rates: N queued emails sent by P mailq worker processes (null backend), next to
the bare loop with P processes on the same number of rows.

Both start from the same point: the processes are up, connected and idle, then the work
appears at once (mailq: one enqueue transaction commits, its NOTIFY wakes the workers;
bare: every process is told "go"). The rate is N / (last finish - that moment), the last
finish read from the database (mailq: attempts.finished_at; bare: bench_jobs.finished_at),
the moment taken on the bench's clock on the same host. Every email's attempts are
recorded, so the run counts emails handled twice and never. Where /proc can be read, the
CPU time of the drainers and of their server processes over the drain is reported per
email too: on a shared machine it moves much less than the rate.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import asyncpg

from bench import cpu, workload
from bench.databases import BenchError
from bench.plan import BARE, BARE_BOUNDED, MAILQ, MAILQ_DEFAULTS, Context, Measurement, Sample
from bench.processes import (
    Processes,
    bare_loop_argv,
    child_env,
    log_tail,
    process_group,
    worker_argv,
)
from bench.sql import BENCH_QUERIES
from mailq.enqueue import enqueue
from mailq.settings import CONCURRENCY

POLL_S = 0.05
START_TIMEOUT_S = 60.0
# Generous: a drain slower than 100 emails/s (plus a minute) is a failure to report.
MIN_RATE = 100.0


def _deadline(count: int) -> float:
    return time.monotonic() + 60.0 + count / MIN_RATE


async def wait_registered(conn: asyncpg.Connection, group: Processes, count: int) -> None:
    """Until `count` workers hold a lease (they LISTEN before they register)."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while await conn.fetchval(BENCH_QUERIES["bench_workers_registered"]) < count:
        group.check_alive()
        if time.monotonic() > deadline:
            raise BenchError(f"workers did not start within {START_TIMEOUT_S:.0f}s")
        await asyncio.sleep(POLL_S)


async def wait_finished(
    conn: asyncpg.Connection, group: Processes, count: int, since: int = 0
) -> bool:
    """Until `count` emails (those with an id above `since`, when given) are finished;
    False when the deadline passed first."""
    deadline = _deadline(count)
    while (
        await conn.fetchval(BENCH_QUERIES["bench_emails_finished_since"], since)
        if since
        else await conn.fetchval(BENCH_QUERIES["bench_emails_finished"])
    ) < count:
        group.check_alive()
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(POLL_S)
    return True


class CpuMeter:
    """CPU seconds of the drainers and of the server processes of the database, and the WAL
    bytes the server wrote meanwhile (the whole cluster's)."""

    def __init__(self, conn: asyncpg.Connection, group: Processes) -> None:
        self._conn = conn
        self._group = group
        self._before: tuple[dict[int, float], dict[int, float]] = ({}, {})
        self.drainers: float | None = None
        self.server: float | None = None
        self.wal: float | None = None
        self._lsn = ""

    async def _read(self) -> tuple[dict[int, float], dict[int, float]]:
        backends = [r["pid"] for r in await self._conn.fetch(BENCH_QUERIES["bench_backend_pids"])]
        return cpu.snapshot(c.pid for c in self._group.children), cpu.snapshot(backends)

    async def start(self) -> None:
        self._before = await self._read()
        self._lsn = await self._conn.fetchval(BENCH_QUERIES["bench_wal_lsn"])

    async def stop(self) -> None:
        self.wal = await self._conn.fetchval(BENCH_QUERIES["bench_wal_since"], self._lsn)
        drainers, server = await self._read()
        self.drainers = cpu.spent(self._before[0], drainers)
        self.server = cpu.spent(self._before[1], server)

    def per_item_us(self, count: int) -> dict[str, float]:
        """CPU microseconds per item handled, of the drainers and of the server (what
        could be read), and WAL bytes per item."""
        figures = {"drainers_cpu_us": self.drainers, "server_cpu_us": self.server}
        per_item = {k: v / count * 1e6 for k, v in figures.items() if v is not None and count}
        if self.wal is not None and count:
            per_item["wal_bytes"] = self.wal / count
        return per_item


def _sample(
    count: int,
    available: datetime,
    row: asyncpg.Record,
    timed_out: bool,
    processes: int,
    meter: CpuMeter,
) -> Sample:
    last: datetime | None = row["last_finished"]
    first: datetime | None = row["first_claimed"]
    seconds = (last - available).total_seconds() if last else float("inf")
    from_first = (last - first).total_seconds() if last and first else float("inf")
    done = int(row["done"])
    return Sample(
        {"rate": done / seconds if seconds > 0 else 0.0, **meter.per_item_us(done)},
        counts={"duplicates": int(row["duplicates"]), "lost": int(row["lost"])},
        details={
            "processes": processes,
            "count": count,
            "done": done,
            "seconds": seconds,
            "rate_from_first_claim": done / from_first if from_first > 0 else 0.0,
            "timed_out": timed_out,
        },
    )


async def mailq_drain(
    ctx: Context,
    processes: int,
    *,
    backend: str = "null://",
    count: int | None = None,
    template: str | None = None,
    file_copy: bool = False,
    concurrency: int | None = None,
) -> Sample:
    """`count` emails (default: the run's) drained by `processes` workers, each with
    `concurrency` sends in flight (default: the run's); `template` is a database to clone
    that already holds finished emails (the history measure)."""
    count = ctx.options.emails if count is None else count
    concurrency = ctx.options.concurrency if concurrency is None else concurrency
    batch = workload.emails(count)
    log = ctx.logs / f"drain-mailq-{processes}-{concurrency}.log"
    async with ctx.server.fresh_database("drain", template=template, file_copy=file_copy) as url:
        conn = await asyncpg.connect(url)
        try:
            since = int(await conn.fetchval(BENCH_QUERIES["bench_emails_max_id"]))
            env = child_env(ctx.env, database_url=url, backend=backend)
            async with process_group(log) as group:
                await group.start(worker_argv(concurrency), env, count=processes)
                await wait_registered(conn, group, processes)
                meter = CpuMeter(conn, group)
                await meter.start()
                await enqueue(conn, *batch)
                available = datetime.now(UTC)
                finished = await wait_finished(conn, group, count, since)
                await meter.stop()
                codes = await group.stop()
            if any(codes):
                raise BenchError(f"workers exited with {codes}:\n{log_tail(log)}")
            row = await conn.fetchrow(BENCH_QUERIES["bench_emails_result_since"], since)
        finally:
            await conn.close()
    sample = _sample(count, available, row, not finished, processes, meter)
    sample.details["emails_before"] = since
    return sample


async def bare_drain(
    ctx: Context, processes: int, batch: int | None = None, *, ahead: bool = False
) -> Sample:
    """The bare loop with `processes` processes claiming `batch` rows (default: the run's);
    `ahead`: each claims the next batch on a second connection while one commits."""
    count = ctx.options.emails
    batch = ctx.options.batch if batch is None else batch
    log = ctx.logs / f"drain-bare-{processes}-{batch}{'-ahead' if ahead else ''}.log"
    async with ctx.server.fresh_database("bare") as url:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(BENCH_QUERIES["bench_jobs_create"])
            await conn.execute(BENCH_QUERIES["bench_jobs_fill"], count, workload.payload())
            env = dict(ctx.env, MAILQ_BENCH_DATABASE_URL=url)
            async with process_group(log) as group:
                await group.start(
                    bare_loop_argv(batch, ahead=ahead), env, count=processes, pipes=True
                )
                for child in group.children:
                    assert child.stdout is not None
                    line = await asyncio.wait_for(child.stdout.readline(), START_TIMEOUT_S)
                    if line.strip() != b"ready":
                        raise BenchError(f"a bare loop did not start:\n{log_tail(log)}")
                meter = CpuMeter(conn, group)
                await meter.start()
                available = datetime.now(UTC)
                for child in group.children:
                    assert child.stdin is not None
                    child.stdin.write(b"go\n")
                    await child.stdin.drain()
                remaining = max(1.0, _deadline(count) - time.monotonic())
                await asyncio.wait_for(_handled(group), remaining)
                await meter.stop()
                for child in group.children:
                    assert child.stdin is not None
                    child.stdin.close()
                codes = await asyncio.wait_for(
                    asyncio.gather(*(c.wait() for c in group.children)), START_TIMEOUT_S
                )
            if any(codes):
                raise BenchError(f"bare loops exited with {codes}:\n{log_tail(log)}")
            row = await conn.fetchrow(BENCH_QUERIES["bench_jobs_result"])
        finally:
            await conn.close()
    return _sample(count, available, row, False, processes, meter)


async def _handled(group: Processes) -> int:
    """Wait for each bare loop's count of handled rows (it prints it once drained)."""
    total = 0
    for child in group.children:
        assert child.stdout is not None
        line = await child.stdout.readline()
        if not line.strip().isdigit():
            raise BenchError(f"a bare loop failed:\n{log_tail(group.log)}")
        total += int(line)
    return total


def measurements(
    processes: int, options_emails: int, concurrency: int, batch: int
) -> tuple[Measurement, ...]:
    async def run_mailq(ctx: Context) -> Sample:
        return await mailq_drain(ctx, processes)

    async def run_defaults(ctx: Context) -> Sample:
        return await mailq_drain(ctx, processes, concurrency=CONCURRENCY)

    async def run_bare(ctx: Context) -> Sample:
        return await bare_drain(ctx, processes)

    async def run_bare_bounded(ctx: Context) -> Sample:
        return await bare_drain(ctx, processes, CONCURRENCY, ahead=True)

    common = {"processes": processes, "emails": options_emails}
    return (
        Measurement(
            f"drain/mailq/{processes}",
            "drain",
            MAILQ,
            "emails/s",
            {**common, "concurrency": concurrency, "backend": "null://"},
            run_mailq,
        ),
        Measurement(
            f"drain/mailq_defaults/{processes}",
            "drain",
            MAILQ_DEFAULTS,
            "emails/s",
            {**common, "concurrency": CONCURRENCY, "backend": "null://"},
            run_defaults,
        ),
        Measurement(
            f"drain/bare/{processes}",
            "drain",
            BARE,
            "rows/s",
            {**common, "batch": batch},
            run_bare,
        ),
        Measurement(
            f"drain/bare_bounded/{processes}",
            "drain",
            BARE_BOUNDED,
            "rows/s",
            {**common, "batch": CONCURRENCY, "ahead": True},
            run_bare_bounded,
        ),
    )
