"""The peers, measured in the same run as mailq: PgQueuer (its default batch of 10, and
batch 100) and Procrastinate, each through its adapter run as a subprocess
(mailq/bench/peer_<name>.py), so that no peer is ever imported into a mailq process.

Each measurement gets a fresh database with the peer's schema installed by its adapter.
Drain: the workers are up and idle, then one bulk enqueue makes 50,000 jobs available at
once (the moment the call returns, wall clock); the rate runs to the last finish the peer
records in the database. Every handler records the id it saw, so the run counts jobs
handled twice and never. Wake-up: 2 idle workers, jobs enqueued one at a time at a steady
pace; latency from the enqueue call's return to the handler's first line (both wall clock,
same host).
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import importlib.util
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from bench.databases import BenchError
from bench.drain import START_TIMEOUT_S, CpuMeter, _deadline
from bench.plan import Context, Measurement, Sample
from bench.processes import Processes, log_tail, process_group
from bench.sql import BENCH_QUERIES
from bench.stats import percentile

DSN_VARIABLE = "MAILQ_BENCH_DATABASE_URL"
POLL_S = 0.02
# Idle workers connect, install their listeners and make a first empty fetch; the work
# appears after this much time (no peer says when its listener is up).
SETTLE_S = 1.0


@dataclass(frozen=True, slots=True)
class Peer:
    system: str  # the name in the results
    package: str  # the distribution (pip install …)
    module: str  # the adapter
    worker_args: tuple[str, ...]
    label: str
    sql: str  # prefix of its named blocks in bench.sql
    measures_enqueue: bool = True
    # At most this many jobs per drain (a peer too slow to drain the run's count in time).
    drain_cap: int | None = None


PEERS = (
    Peer(
        "pgqueuer",
        "pgqueuer",
        "bench.peer_pgqueuer",
        ("--batch", "10"),
        "PgQueuer (batch 10)",
        "peer_pgqueuer",
    ),
    Peer(
        "pgqueuer_b100",
        "pgqueuer",
        "bench.peer_pgqueuer",
        ("--batch", "100"),
        "PgQueuer (batch 100)",
        "peer_pgqueuer",
        # Enqueue does not depend on the workers' batch: measured once, as "pgqueuer".
        measures_enqueue=False,
    ),
    Peer(
        "procrastinate",
        "procrastinate",
        "bench.peer_procrastinate",
        ("--concurrency", "10"),
        "Procrastinate (concurrency 10)",
        "peer_procrastinate",
        # It drains ~200 jobs/s here: 50,000 would take 4 minutes per run (x 3 process
        # counts x rounds); its rate is steady after the first second.
        drain_cap=5_000,
    ),
)

LABELS = {p.system: p.label for p in PEERS}


def versions() -> dict[str, str]:
    """Each peer package's installed version, or "not installed" (nothing is imported)."""
    found: dict[str, str] = {}
    for peer in PEERS:
        if importlib.util.find_spec(peer.package) is None:
            found[peer.package] = "not installed"
            continue
        try:
            found[peer.package] = importlib.metadata.version(peer.package)
        except importlib.metadata.PackageNotFoundError:
            found[peer.package] = "not installed"
    return found


def available() -> tuple[Peer, ...]:
    installed = versions()
    return tuple(p for p in PEERS if installed[p.package] != "not installed")


async def _adapter(ctx: Context, peer: Peer, url: str, log: Path, *args: str) -> str:
    """Run one adapter command to its end; its stdout."""
    with log.open("ab") as err:
        child = await asyncio.create_subprocess_exec(
            *_argv(peer, *args),
            env=_env(ctx, url),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=err,
        )
        out, _ = await child.communicate()
    if child.returncode:
        raise BenchError(
            f"{peer.module} {args[0]} exited with {child.returncode}:\n{log_tail(log)}"
        )
    return out.decode()


def _argv(peer: Peer, *args: str) -> list[str]:
    return [sys.executable, "-m", peer.module, *args]


def _env(ctx: Context, url: str) -> dict[str, str]:
    env = {k: v for k, v in ctx.env.items() if not k.startswith("MAILQ_")}
    env[DSN_VARIABLE] = url
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _last_json(out: str) -> dict[str, Any]:
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if not lines:
        raise BenchError(f"an adapter printed no result: {out[-500:]!r}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


async def enqueue_bulk(ctx: Context, peer: Peer) -> Sample:
    count = ctx.options.emails
    log = ctx.logs / f"enqueue-{peer.system}.log"
    async with ctx.server.fresh_database("penq") as url:
        await _adapter(ctx, peer, url, log, "install")
        result = _last_json(
            await _adapter(ctx, peer, url, log, "enqueue-bulk", "--count", str(count))
        )
    return Sample({"rate": count / result["seconds"]}, details=result)


async def enqueue_one(ctx: Context, peer: Peer) -> Sample:
    count = ctx.options.one_at_a_time
    log = ctx.logs / f"enqueue1-{peer.system}.log"
    async with ctx.server.fresh_database("penq1") as url:
        await _adapter(ctx, peer, url, log, "install")
        result = _last_json(
            await _adapter(ctx, peer, url, log, "enqueue-one", "--count", str(count))
        )
    return Sample({"rate": count / result["seconds"]}, details=result)


async def _start_workers(
    ctx: Context, peer: Peer, url: str, log: Path, group: Processes, count: int, seen: Path
) -> list[Path]:
    files = [seen.with_name(f"{seen.name}-{n}") for n in range(count)]
    env = _env(ctx, url)
    for path in files:
        argv = ["-m", peer.module, "worker", "--seen", str(path), *peer.worker_args]
        await group.start(argv, env, count=1, pipes=True)
    for child in group.children:
        assert child.stdout is not None
        line = await asyncio.wait_for(child.stdout.readline(), START_TIMEOUT_S)
        if line.strip() != b"ready":
            raise BenchError(f"a {peer.system} worker did not start:\n{log_tail(log)}")
    await asyncio.sleep(SETTLE_S if ctx.options.emails > 5_000 else SETTLE_S / 2)
    group.check_alive()
    return files


async def _stop_workers(group: Processes, log: Path) -> None:
    for child in group.children:
        if child.stdin is not None and not child.stdin.is_closing():
            child.stdin.close()
    codes = await asyncio.wait_for(
        asyncio.gather(*(c.wait() for c in group.children)), START_TIMEOUT_S
    )
    if any(codes):
        raise BenchError(f"workers exited with {codes}:\n{log_tail(log)}")


async def _wait_empty(conn: asyncpg.Connection, peer: Peer, group: Processes, count: int) -> bool:
    deadline = _deadline(count)
    while await conn.fetchval(BENCH_QUERIES[f"{peer.sql}_remaining"]) > 0:
        group.check_alive()
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(POLL_S)
    return True


def _read_seen(files: list[Path]) -> list[tuple[int, float]]:
    rows = []
    for path in files:
        for line in path.read_text(encoding="ascii").splitlines():
            job_id, at = line.split("\t")
            rows.append((int(job_id), float(at)))
    return rows


def _tally(expected: set[int], seen: list[tuple[int, float]]) -> dict[str, int]:
    counts = Counter(job_id for job_id, _ in seen if job_id in expected)
    return {
        "duplicates": sum(1 for n in counts.values() if n > 1),
        "lost": len(expected - counts.keys()),
    }


def drain_count(peer: Peer, emails: int) -> int:
    return min(emails, peer.drain_cap) if peer.drain_cap else emails


async def drain(ctx: Context, peer: Peer, processes: int) -> Sample:
    count = drain_count(peer, ctx.options.emails)
    log = ctx.logs / f"drain-{peer.system}-{processes}.log"
    ids_file = ctx.logs / f"ids-{peer.system}-{processes}"
    async with ctx.server.fresh_database("pdrain") as url:
        await _adapter(ctx, peer, url, log, "install")
        conn = await asyncpg.connect(url)
        try:
            async with process_group(log) as group:
                files = await _start_workers(
                    ctx, peer, url, log, group, processes, ctx.logs / f"seen-{peer.system}"
                )
                meter = CpuMeter(conn, group)
                await meter.start()
                out = await _adapter(
                    ctx, peer, url, log, "fill", "--count", str(count), "--out", str(ids_file)
                )
                available = datetime.fromtimestamp(_last_json(out)["returned_at"], UTC)
                finished = await _wait_empty(conn, peer, group, count)
                last = await conn.fetchval(BENCH_QUERIES[f"{peer.sql}_last_finished"])
                await meter.stop()
                await _stop_workers(group, log)
        finally:
            await conn.close()
    expected = {int(line) for line in ids_file.read_text(encoding="ascii").split()}
    seen = _read_seen(files)
    tally = _tally(expected, seen)
    done = len(expected) - tally["lost"]
    seconds = (last - available).total_seconds() if last else float("inf")
    return Sample(
        {"rate": done / seconds if seconds > 0 else 0.0, **meter.per_item_us(done)},
        counts=tally,
        details={
            "processes": processes,
            "count": count,
            "done": done,
            "handled": len(seen),
            "seconds": seconds,
            "timed_out": not finished,
        },
    )


async def wakeup(ctx: Context, peer: Peer) -> Sample:
    count = ctx.options.wakeup_emails
    workers = ctx.options.wakeup_workers
    log = ctx.logs / f"wakeup-{peer.system}.log"
    paced = ctx.logs / f"paced-{peer.system}"
    async with ctx.server.fresh_database("pwake") as url:
        await _adapter(ctx, peer, url, log, "install")
        conn = await asyncpg.connect(url)
        try:
            async with process_group(log) as group:
                files = await _start_workers(
                    ctx, peer, url, log, group, workers, ctx.logs / f"wseen-{peer.system}"
                )
                await _adapter(
                    ctx, peer, url, log, "paced", "--count", str(count),
                    "--rate", str(ctx.options.wakeup_rate), "--out", str(paced),
                )  # fmt: skip
                finished = await _wait_empty(conn, peer, group, count)
                await _stop_workers(group, log)
        finally:
            await conn.close()
    returned: dict[int, float] = {}
    for line in paced.read_text(encoding="ascii").splitlines():
        id_text, at_text = line.split("\t")
        returned[int(id_text)] = float(at_text)
    seen = _read_seen(files)
    first_start: dict[int, float] = {}
    for job_id, at in seen:
        first_start.setdefault(job_id, at)
    latencies = sorted(
        (first_start[i] - returned[i]) * 1000.0 for i in returned if i in first_start
    )
    if not latencies:
        raise BenchError(f"no {peer.system} job ran in the wake-up run:\n{log_tail(log)}")
    return Sample(
        {
            "p50_ms": percentile(latencies, 50),
            "p95_ms": percentile(latencies, 95),
            "p99_ms": percentile(latencies, 99),
            "max_ms": latencies[-1],
        },
        counts=_tally(set(returned), seen),
        details={
            "emails": count,
            "workers": workers,
            "min_ms": latencies[0],
            "mean_ms": sum(latencies) / len(latencies),
            "latencies_ms": [round(x, 3) for x in latencies],
            "timed_out": not finished,
        },
    )


def _bind(fn: Any, *args: Any) -> Any:
    async def run(ctx: Context) -> Sample:
        result: Sample = await fn(ctx, *args)
        return result

    return run


def enqueue_bulk_measurements(peers: tuple[Peer, ...], count: int) -> tuple[Measurement, ...]:
    return tuple(
        Measurement(
            f"enqueue_bulk/{p.system}",
            "enqueue_bulk",
            p.system,
            "jobs/s",
            {"jobs": count, "api": "bulk"},
            _bind(enqueue_bulk, p),
        )
        for p in peers
        if p.measures_enqueue
    )


def enqueue_one_measurements(peers: tuple[Peer, ...], count: int) -> tuple[Measurement, ...]:
    return tuple(
        Measurement(
            f"enqueue_one/{p.system}",
            "enqueue_one",
            p.system,
            "jobs/s",
            {"jobs": count},
            _bind(enqueue_one, p),
        )
        for p in peers
        if p.measures_enqueue
    )


def drain_measurements(
    peers: tuple[Peer, ...], processes: int, count: int
) -> tuple[Measurement, ...]:
    return tuple(
        Measurement(
            f"drain/{p.system}/{processes}",
            "drain",
            p.system,
            "jobs/s",
            {
                "processes": processes,
                "jobs": drain_count(p, count),
                "worker": " ".join(p.worker_args),
            },
            _bind(drain, p, processes),
        )
        for p in peers
    )


def wakeup_measurements(peers: tuple[Peer, ...], count: int) -> tuple[Measurement, ...]:
    return tuple(
        Measurement(
            f"wakeup/{p.system}",
            "wakeup",
            p.system,
            "ms",
            {"jobs": count},
            _bind(wakeup, p),
            headline="p99_ms",
        )
        for p in peers
    )
