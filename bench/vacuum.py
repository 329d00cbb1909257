"""A held-back vacuum: mailq draining at full speed while a forgotten transaction pins the
xmin horizon, before, during and after it.

The workers (null backend) drain a backlog that the bench keeps topped up (the server
writes the emails: INSERT … SELECT, so the bench spends no CPU on validation). After
`before` seconds a separate connection runs `BEGIN; SELECT txid_current();` and stays idle
in that transaction for `hold` seconds (2 minutes by default): while it is open no row
version deleted since it began can be removed, so every claimed email leaves its entry in
the claim index (emails_due_idx) behind. Then it rolls back, and the drain goes on for
`after` seconds. The remaining backlog is drained at the end, so that duplicates and lost
emails are counted as in the drain measure.

Figures per phase (before, during the hold, its last quarter, after): the drain rate
(emails whose sent attempt finished in the phase, database clock / its length), the claim
statement's latency p50/p99, index entries read from emails_due_idx per email
(pg_stat_user_indexes), and the ratios to the phase before. The claim latency is the
server's time for the claim statement, read from outside: pg_stat_activity is sampled every
few milliseconds, and a connection idle after a claim shows it as its last query, from its
start (query_start) to its end (state_change). Claims followed at once by another statement
on the same connection are not seen; the sample is the same kind in every phase.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from bench import workload
from bench.databases import BenchError
from bench.drain import CpuMeter, wait_registered
from bench.plan import MAILQ, Context, Measurement, Sample
from bench.processes import child_env, log_tail, process_group, worker_argv
from bench.sql import BENCH_QUERIES
from bench.stats import percentile
from mailq.db.queries import QUERIES

PROCESSES = 2
# The backlog is kept between these (emails queued, not yet sent), in chunks.
BACKLOG_LOW = 10_000
FEED_CHUNK = 2_500
FEED_POLL_S = 0.1
# pg_stat_activity is read this often for the claim latency.
SAMPLE_S = 0.004
# The drain rate over time is kept in windows of this many seconds (the JSON's details).
WINDOW_S = 5.0
FINISH_TIMEOUT_S = 120.0
PHASES = ("before", "during", "during_end", "after")


@dataclass(frozen=True, slots=True)
class Phase:
    name: str
    start: datetime
    end: datetime

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()


class Feeder:
    """Keeps the backlog above BACKLOG_LOW until stopped."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn
        self._content = workload.payload()
        self.fed = 0
        self._stop = asyncio.Event()

    async def feed(self, count: int) -> None:
        await self._conn.execute(
            BENCH_QUERIES["bench_vacuum_feed"], self.fed + 1, count, self._content
        )
        self.fed += count

    async def run(self) -> None:
        while not self._stop.is_set():
            sent = int(await self._conn.fetchval(BENCH_QUERIES["bench_emails_finished"]))
            while self.fed - sent < BACKLOG_LOW:
                await self.feed(FEED_CHUNK)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), FEED_POLL_S)

    def stop(self) -> None:
        self._stop.set()


class ClaimSampler:
    """Claim statements seen ending on the workers' connections (see the module doc)."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn
        self.seen: dict[tuple[int, datetime], float] = {}
        self._stop = asyncio.Event()

    async def run(self) -> None:
        claim = QUERIES["email_claim_due"]
        while not self._stop.is_set():
            for row in await self._conn.fetch(BENCH_QUERIES["bench_vacuum_claims_seen"], claim):
                self.seen[(row["pid"], row["query_start"])] = row["ms"]
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), SAMPLE_S)

    def stop(self) -> None:
        self._stop.set()

    def latencies(self, phase: Phase) -> list[float]:
        return sorted(
            ms for (_pid, start), ms in self.seen.items() if phase.start <= start < phase.end
        )


async def _clock(conn: asyncpg.Connection) -> datetime:
    value: datetime = await conn.fetchval(BENCH_QUERIES["bench_vacuum_clock"])
    return value


async def _stats(conn: asyncpg.Connection) -> asyncpg.Record:
    return await conn.fetchrow(BENCH_QUERIES["bench_vacuum_index_reads"])


async def _hold(url: str, seconds: float) -> None:
    """The forgotten transaction: an xid, then idle for `seconds`, then rolled back."""
    holder = await asyncpg.connect(url)
    try:
        transaction = holder.transaction()
        await transaction.start()
        await holder.fetchval(BENCH_QUERIES["bench_vacuum_pin"])
        await asyncio.sleep(seconds)
        await transaction.rollback()
    finally:
        await holder.close()


async def _phases(
    conn: asyncpg.Connection, url: str, ctx: Context, stats: dict[str, asyncpg.Record]
) -> dict[str, Phase]:
    """Run before / hold / after; their boundaries on the database's clock, and the index
    statistics at each boundary."""
    options = ctx.options
    t0 = await _clock(conn)
    stats["t0"] = await _stats(conn)
    await asyncio.sleep(options.vacuum_before_s)
    t1 = await _clock(conn)
    stats["t1"] = await _stats(conn)
    await _hold(url, options.vacuum_hold_s)
    t2 = await _clock(conn)
    stats["t2"] = await _stats(conn)
    await asyncio.sleep(options.vacuum_after_s)
    t3 = await _clock(conn)
    stats["t3"] = await _stats(conn)
    end_of_hold = t1 + (t2 - t1) * 0.75
    return {
        "before": Phase("before", t0, t1),
        "during": Phase("during", t1, t2),
        "during_end": Phase("during_end", end_of_hold, t2),
        "after": Phase("after", t2, t3),
    }


async def _rates(conn: asyncpg.Connection, phases: dict[str, Phase]) -> dict[str, int]:
    sent = {}
    for name, phase in phases.items():
        sent[name] = int(
            await conn.fetchval(BENCH_QUERIES["bench_vacuum_sent_between"], phase.start, phase.end)
        )
    return sent


def _figures(
    phases: dict[str, Phase],
    sent: dict[str, int],
    claims: ClaimSampler,
    stats: dict[str, asyncpg.Record],
) -> tuple[dict[str, float], dict[str, Any]]:
    figures: dict[str, float] = {}
    seen: dict[str, int] = {}
    for name, phase in phases.items():
        figures[f"rate_{name}"] = sent[name] / phase.seconds if phase.seconds > 0 else 0.0
        latencies = claims.latencies(phase)
        seen[name] = len(latencies)
        if latencies:
            figures[f"claim_p50_ms_{name}"] = percentile(latencies, 50)
            figures[f"claim_p99_ms_{name}"] = percentile(latencies, 99)
    before = figures["rate_before"]
    for name in PHASES[1:]:
        if before > 0:
            figures[f"rate_{name}_vs_before"] = figures[f"rate_{name}"] / before
        p99, base = figures.get(f"claim_p99_ms_{name}"), figures.get("claim_p99_ms_before")
        if p99 is not None and base:
            figures[f"claim_p99_{name}_vs_before"] = p99 / base
    bounds = {"before": ("t0", "t1"), "during": ("t1", "t2"), "after": ("t2", "t3")}
    for name, (a, b) in bounds.items():
        reads = stats[b]["due_index_reads"] - stats[a]["due_index_reads"]
        if sent[name]:
            figures[f"due_index_reads_per_email_{name}"] = reads / sent[name]
    details = {
        "phase_seconds": {n: p.seconds for n, p in phases.items()},
        "sent": sent,
        "claims_seen": seen,
        "emails_mb": {k: v["emails_bytes"] / 1e6 for k, v in stats.items()},
    }
    return figures, details


async def mailq_vacuum(ctx: Context) -> Sample:
    log = ctx.logs / "vacuum-mailq.log"
    async with ctx.server.fresh_database("vacuum") as url:
        conn = await asyncpg.connect(url)
        feeder_conn = await asyncpg.connect(url)
        sampler_conn = await asyncpg.connect(url)
        try:
            feeder, claims = Feeder(feeder_conn), ClaimSampler(sampler_conn)
            env = child_env(ctx.env, database_url=url, backend="null://")
            async with process_group(log) as group:
                await group.start(worker_argv(ctx.options.concurrency), env, count=PROCESSES)
                await wait_registered(conn, group, PROCESSES)
                await feeder.feed(2 * BACKLOG_LOW)
                meter = CpuMeter(conn, group)
                await meter.start()
                tasks = [asyncio.create_task(feeder.run()), asyncio.create_task(claims.run())]
                stats: dict[str, asyncpg.Record] = {}
                try:
                    phases = await _phases(conn, url, ctx, stats)
                finally:
                    feeder.stop()
                    claims.stop()
                    await asyncio.gather(*tasks)
                await meter.stop()
                drained = await _wait_sent(conn, group, feeder.fed)
                codes = await group.stop()
            if any(codes):
                raise BenchError(f"workers exited with {codes}:\n{log_tail(log)}")
            row = await conn.fetchrow(BENCH_QUERIES["bench_emails_result"])
            sent = await _rates(conn, phases)
            windows = await conn.fetch(
                BENCH_QUERIES["bench_vacuum_sent_windows"],
                phases["before"].start,
                WINDOW_S,
                phases["after"].end,
            )
        finally:
            for c in (conn, feeder_conn, sampler_conn):
                await c.close()
    figures, details = _figures(phases, sent, claims, stats)
    done = sum(sent[n] for n in ("before", "during", "after"))
    figures.update(meter.per_item_us(done))
    details.update(
        processes=PROCESSES,
        emails=feeder.fed,
        drained=drained,
        rate_windows={"seconds": WINDOW_S, "sent": [int(w["sent"]) for w in windows]},
    )
    return Sample(
        figures,
        counts={"duplicates": int(row["duplicates"]), "lost": int(row["lost"])},
        details=details,
    )


async def _wait_sent(conn: asyncpg.Connection, group: Any, count: int) -> bool:
    """Until every queued email is finished (the rest of the backlog, after the phases)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + FINISH_TIMEOUT_S
    while int(await conn.fetchval(BENCH_QUERIES["bench_emails_finished"])) < count:
        group.check_alive()
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


def measurements(
    concurrency: int, before_s: float, hold_s: float, after_s: float
) -> tuple[Measurement, ...]:
    params = {
        "processes": PROCESSES,
        "concurrency": concurrency,
        "backend": "null://",
        "before_s": before_s,
        "hold_s": hold_s,
        "after_s": after_s,
    }
    return (
        Measurement(
            "vacuum/mailq",
            "vacuum",
            MAILQ,
            "x",
            params,
            mailq_vacuum,
            headline="rate_during_vs_before",
        ),
    )
