"""What the chaos scenarios share: a fleet of real worker processes, the test's own view of
the database (which survives its outages), and the figures every scenario reports.

Every scenario measures the same things, from the relay's records and the database:
- lost: emails the relay never accepted (by the deadline);
- duplicated: deliveries beyond the first, summed over emails (same Message-ID);
- recovery: seconds from the end of the fault to the last email's `sent`
  (`emails.finished_at`, the database's clock, the same host as the test's);
- burnt: attempts counted against emails (outcomes other than `sent` and `deferred`).

`MAILQ_CHAOS_MEASURE=1` lengthens every deadline and turns failed checks into a list that
is raised at the end, so that a run of scenarios that fail still yields all its figures
(how `tests/chaos/BEFORE.md` was written). `MAILQ_CHAOS_REPORT=FILE` appends each
scenario's figures to FILE as one JSON line.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from tests.support.processes import start_worker
from tests.support.relay import RecordingRelay
from tests.support.waiting import eventually

MEASURE = os.environ.get("MAILQ_CHAOS_MEASURE", "") not in {"", "0"}
# In a measuring run a deadline is stretched to this many times its stated bound.
MEASURE_STRETCH = 8.0
MEASURE_MAX_WAIT_S = 420.0
# The per-test pytest timeout: generous for the stated bounds, longer when measuring.
TEST_TIMEOUT_S = 1800 if MEASURE else 240

LEASE_S = 5
CONCURRENCY = 8
POLL_INTERVAL_S = 1

OBSERVER_ERRORS = (
    OSError,
    TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
)


def deadline_s(bound_s: float) -> float:
    """How long to wait for something stated to happen within `bound_s`."""
    return min(MEASURE_MAX_WAIT_S, bound_s * MEASURE_STRETCH) if MEASURE else bound_s


def chaos_env(base: Mapping[str, str], **settings: str) -> dict[str, str]:
    """The workers' settings for chaos runs: a short lease, a few slots, a fast poll."""
    env = dict(base)
    env.update(
        {
            "MAILQ_LEASE": str(LEASE_S),
            "MAILQ_CONCURRENCY": str(CONCURRENCY),
            "MAILQ_POLL_INTERVAL": str(POLL_INTERVAL_S),
        }
    )
    env.update({f"MAILQ_{k.upper()}": v for k, v in settings.items()})
    return env


class Observer:
    """The test's connection to the queue's database, opened again after an outage. Each
    query answers None while the database cannot be reached (polls treat that as not yet)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._conn: asyncpg.Connection | None = None

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            self._conn = await asyncpg.connect(self.url, timeout=3, command_timeout=10)
        return self._conn

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record] | None:
        try:
            conn = await self._connection()
            return list(await conn.fetch(query, *args))
        except OBSERVER_ERRORS:
            await self.close()
            return None

    async def fetchval(self, query: str, *args: Any) -> Any:
        rows = await self.fetch(query, *args)
        return None if rows is None or not rows else rows[0][0]

    async def now(self) -> float | None:
        """The database's clock (epoch seconds)."""
        value = await self.fetchval("SELECT extract(epoch FROM clock_timestamp())::float8")
        return None if value is None else float(value)

    async def count(self, status: str) -> int | None:
        value = await self.fetchval("SELECT count(*) FROM mailq.emails WHERE status = $1", status)
        return None if value is None else int(value)

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.terminate()


async def wait_until(
    check: Any, *, timeout: float, interval: float = 0.1, message: str = "condition"
) -> float:
    """Poll `await check()` until truthy; returns the seconds it took. AssertionError past the
    deadline (the deadline is the caller's stated bound)."""
    began = time.monotonic()
    await eventually(check, timeout=timeout, interval=interval, message=message)
    return time.monotonic() - began


class Fleet:
    """Real `python -m mailq.worker` processes; whatever is left is killed on exit."""

    def __init__(self, env: Mapping[str, str], log: Path, seed: int = 12) -> None:
        self.env = dict(env)
        self.log = log
        self.processes: list[subprocess.Popen[bytes]] = []
        self.killed = 0
        self.random = random.Random(seed)

    def start(self, count: int = 1, env: Mapping[str, str] | None = None) -> None:
        for _ in range(count):
            self.processes.append(start_worker(env or self.env, log=self.log))

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes if p.poll() is None]

    def process(self, pid: int) -> subprocess.Popen[bytes]:
        (process,) = [p for p in self.processes if p.pid == pid]
        return process

    def kill(self, pid: int, *, restart: bool = True) -> None:
        """kill -9, reaped; a new worker takes its place."""
        process = self.process(pid)
        os.kill(pid, signal.SIGKILL)
        process.wait(timeout=30)
        self.processes.remove(process)
        self.killed += 1
        if restart:
            self.start()

    def signal(self, pid: int, sig: int) -> None:
        os.kill(pid, sig)

    def stop(self, timeout: float = 60) -> list[int | None]:
        """SIGTERM to all, then wait; returns the exit codes (None: had to be killed)."""
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGCONT)  # a frozen one must wake to stop
                process.send_signal(signal.SIGTERM)
        codes: list[int | None] = []
        for process in self.processes:
            try:
                codes.append(process.wait(timeout=timeout))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=30)
                codes.append(None)
        return codes

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *_exc: object) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)

    async def holders(self, observer: Observer) -> list[int]:
        """Pids of live workers that hold claims right now, by the database's word."""
        rows = await observer.fetch(
            "SELECT DISTINCT w.pid FROM mailq.worker_leases w JOIN mailq.emails e "
            "ON e.worker_id = w.id AND e.status = 'sending' WHERE w.pid = ANY($1::int[])",
            self.pids,
        )
        return sorted(r["pid"] for r in rows or [])


@dataclass
class Figures:
    scenario: str
    emails: int
    lost: int = 0
    duplicated: int = 0
    duplicate_bound: int = 0
    recovery_s: float | None = None
    recovery_bound_s: float = 0.0
    burnt: int = 0
    burnt_bound: int = 0
    failed: int = 0
    max_attempts: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    statuses: dict[str, int] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        recovery = "not recovered" if self.recovery_s is None else f"{self.recovery_s:.1f}s"
        return (
            f"chaos {self.scenario}: {self.emails} emails, lost {self.lost}, "
            f"duplicated {self.duplicated} (bound {self.duplicate_bound}), recovery {recovery} "
            f"(bound {self.recovery_bound_s:.0f}s), attempts burnt {self.burnt} "
            f"(bound {self.burnt_bound}), failed {self.failed}, max attempts {self.max_attempts}, "
            f"outcomes {self.outcomes}, {self.notes}"
        )

    def report(self) -> None:
        print("\n" + self.line())
        target = os.environ.get("MAILQ_CHAOS_REPORT")
        if target:
            with open(target, "a") as out:
                out.write(json.dumps(asdict(self)) + "\n")


async def enqueue_emails(url: str, total: int, kind: str = "welcome") -> None:
    from mailq import enqueue
    from tests.support.emails import welcome

    conn = await asyncpg.connect(url)
    try:
        await enqueue(conn, *[welcome(i, kind=kind) for i in range(total)])
    finally:
        await conn.close()


async def sent_by(observer: Observer, total: int, bound_s: float) -> float | None:
    """Wait (up to the stated bound, stretched when measuring) until all `total` emails are
    `sent`; returns how long that took, or None when they were not."""

    async def all_sent() -> bool:
        return await observer.count("sent") == total

    try:
        return await wait_until(all_sent, timeout=deadline_s(bound_s), interval=0.2)
    except AssertionError:
        return None


async def figures(
    scenario: str,
    observer: Observer,
    relays: Iterable[RecordingRelay],
    *,
    total: int,
    fault_ended: float,
    duplicate_bound: int,
    recovery_bound_s: float,
    burnt_bound: int,
) -> Figures:
    """The figures of a run, once it is over (all sent, or the deadline passed)."""
    result = Figures(
        scenario,
        total,
        duplicate_bound=duplicate_bound,
        recovery_bound_s=recovery_bound_s,
        burnt_bound=burnt_bound,
    )

    async def emails() -> tuple[list[asyncpg.Record]] | None:
        rows = await observer.fetch("SELECT message_id, status, attempts FROM mailq.emails")
        return None if rows is None else (rows,)

    # The database may be on its way back.
    (rows,) = await eventually(
        emails, timeout=10, interval=0.2, message="the queue's database did not come back"
    )
    received: Counter[str] = Counter()
    for relay in relays:
        received.update(relay.counts())
    ids = {r["message_id"] for r in rows}
    strangers = set(received) - ids
    assert not strangers, f"the relay received {len(strangers)} messages that were never queued"
    result.lost = sum(1 for m in ids if not received[m])
    result.duplicated = sum(n - 1 for n in received.values() if n > 1)
    result.statuses = dict(Counter(r["status"] for r in rows))
    result.failed = result.statuses.get("failed", 0)
    result.max_attempts = max((r["attempts"] for r in rows), default=0)
    outcomes = await observer.fetch(
        "SELECT outcome, count(*) AS n FROM mailq.attempts GROUP BY outcome"
    )
    result.outcomes = {r["outcome"]: r["n"] for r in outcomes or []}
    result.burnt = sum(n for o, n in result.outcomes.items() if o not in {"sent", "deferred"})
    if result.statuses.get("sent", 0) == total:
        last = await observer.fetchval(
            "SELECT extract(epoch FROM max(finished_at))::float8 FROM mailq.emails"
        )
        result.recovery_s = max(0.0, float(last) - fault_ended)
    return result


class Checks:
    """The scenario's assertions. Normally the first failure raises; when measuring, all are
    collected and raised together at the end, after the figures are reported."""

    def __init__(self) -> None:
        self.failures: list[str] = []

    def that(self, condition: bool, message: str) -> None:
        if condition:
            return
        if not MEASURE:
            raise AssertionError(message)
        self.failures.append(message)

    def done(self) -> None:
        if self.failures:
            raise AssertionError("; ".join(self.failures))

    def standard(self, result: Figures) -> None:
        """What every scenario asserts."""
        self.that(result.lost == 0, f"{result.lost} emails never reached the relay")
        self.that(
            result.duplicated <= result.duplicate_bound,
            f"{result.duplicated} duplicate deliveries (bound {result.duplicate_bound})",
        )
        self.that(
            result.burnt <= result.burnt_bound,
            f"{result.burnt} attempts counted against emails (bound {result.burnt_bound})",
        )
        self.that(result.failed == 0, f"{result.failed} emails failed")
        self.that(
            result.recovery_s is not None and result.recovery_s <= result.recovery_bound_s,
            f"recovery took {result.recovery_s}s (bound {result.recovery_bound_s:.0f}s)",
        )


# Worker log events worth counting in a chaos run (the `action=` key of mailq's log lines).
LOG_ACTIONS = (
    "rescued",
    "outcome_refused",
    "outcome_reconciled",
    "lease_lost",
    "lease_lapsed",
    "record_failed",
    "connection_lost",
    "breaker_opened",
    "breaker_closed",
)


def log_summary(log: Path) -> dict[str, int]:
    """How often each interesting event appears in the workers' log, and tracebacks."""
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return {}
    summary = {a: text.count(f"action={a}") for a in LOG_ACTIONS}
    summary["tracebacks"] = text.count("Traceback (most recent call last)")
    return {k: v for k, v in summary.items() if v}
