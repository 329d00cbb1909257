"""What every peer adapter (`python -m mailq.bench.peer_<name> …`) shares: its command line,
its timings and its record of every job it handled.

A peer adapter is a small program run as a subprocess, so that a peer's import never enters
a mailq process. It reads the database URL from MAILQ_BENCH_DATABASE_URL and is told what to
do by a subcommand:

- `install`: create the peer's schema;
- `enqueue-bulk --count N`: N jobs through the peer's bulk API, timed; prints JSON;
- `enqueue-one --count N`: N jobs one call at a time, timed; prints JSON;
- `fill --count N --out FILE`: N jobs in one bulk call (untimed for the report); writes the
  ids, prints JSON with the wall-clock moment the call returned (`returned_at`);
- `paced --count N --rate R --out FILE`: N jobs one at a time at R per second; writes
  `id<TAB>returned_at` for each;
- `worker --seen FILE [--batch B] [--concurrency C]`: a worker with a no-op handler; prints
  "ready" once set up, handles jobs until its stdin closes, then writes `id<TAB>started_at`
  for every job its handler saw (wall clock, read first thing in the handler).

Only the standard library is imported here: the peer's module imports its library.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

DSN_VARIABLE = "MAILQ_BENCH_DATABASE_URL"


@dataclass
class Seen:
    """Every job a worker's handler started, with the wall-clock moment it started."""

    rows: list[tuple[int, float]] = field(default_factory=list)

    def record(self, job_id: int) -> None:
        self.rows.append((job_id, time.time()))

    def write(self, path: Path) -> None:
        path.write_text("".join(f"{i}\t{t:.6f}\n" for i, t in self.rows), encoding="ascii")


def payload(n: int) -> dict[str, object]:
    """A job's arguments: about the size of a mailq email's stored content."""
    return {
        "to": f"user{n}@example.com",
        "subject": "Welcome to the platform, {{ name }}",
        "text": "Hello {{ name }},\n\nthank you for signing up. Your account {{ account }} is "
        "ready: sign in at any time to\nbuild your portfolio, and reply to this email if "
        "anything is unclear.\n\nThe team\n",
        "context": {"name": f"User {n}", "account": f"acct-{n:08d}"},
        "metadata": {"user_id": n},
    }


def payload_bytes(n: int) -> bytes:
    return json.dumps(payload(n)).encode()


def parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog)
    sub = p.add_subparsers(dest="role", required=True)
    sub.add_parser("install")
    for role in ("enqueue-bulk", "enqueue-one"):
        sub.add_parser(role).add_argument("--count", type=int, required=True)
    fill = sub.add_parser("fill")
    fill.add_argument("--count", type=int, required=True)
    fill.add_argument("--out", type=Path, required=True)
    paced = sub.add_parser("paced")
    paced.add_argument("--count", type=int, required=True)
    paced.add_argument("--rate", type=float, required=True)
    paced.add_argument("--out", type=Path, required=True)
    worker = sub.add_parser("worker")
    worker.add_argument("--seen", type=Path, required=True)
    worker.add_argument("--batch", type=int, default=10)
    worker.add_argument("--concurrency", type=int, default=10)
    return p


def dsn() -> str:
    url = os.environ.get(DSN_VARIABLE)
    if not url:
        print(f"{DSN_VARIABLE} is not set", file=sys.stderr)
        raise SystemExit(2)
    return url


def emit(**figures: object) -> None:
    print(json.dumps(figures), flush=True)


async def timed(call: Callable[[], Awaitable[object]]) -> float:
    started = time.perf_counter()
    await call()
    return time.perf_counter() - started


async def pace(count: int, rate: float, enqueue_one: Callable[[int], Awaitable[int]]) -> str:
    """Enqueue `count` jobs one at a time at `rate` per second; the `id<TAB>returned_at`
    lines."""
    lines = []
    start = time.monotonic()
    for n in range(count):
        delay = start + n / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        job_id = await enqueue_one(n)
        lines.append(f"{job_id}\t{time.time():.6f}\n")
    return "".join(lines)


def write_ids(path: Path, ids: Iterable[int]) -> None:
    path.write_text("".join(f"{i}\n" for i in ids), encoding="ascii")


async def until_stdin_closes() -> None:
    """Return when the bench closes this process's stdin (its signal to stop)."""
    while await asyncio.to_thread(sys.stdin.readline):
        pass
