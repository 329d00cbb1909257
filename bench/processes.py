"""The processes a measurement runs: mailq workers and bare-loop drainers.

Their output goes to one log file per measurement; when a measurement fails, the end of
that log is part of the error.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from bench.databases import BenchError

STOP_TIMEOUT_S = 30.0
LOG_TAIL_BYTES = 2_000


def child_env(parent: Mapping[str, str], **mailq: str) -> dict[str, str]:
    """The parent's environment without its MAILQ_* settings, plus the given ones."""
    env = {k: v for k, v in parent.items() if not k.startswith("MAILQ_")}
    env.update({f"MAILQ_{k.upper()}": v for k, v in mailq.items()})
    env["PYTHONUNBUFFERED"] = "1"
    return env


def log_tail(log: Path) -> str:
    try:
        data = log.read_bytes()[-LOG_TAIL_BYTES:]
    except OSError:
        return ""
    return data.decode("utf-8", errors="replace").strip()


class Processes:
    """A group of child processes started together and stopped together."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self.children: list[asyncio.subprocess.Process] = []

    async def start(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        *,
        count: int,
        pipes: bool = False,
    ) -> None:
        with self.log.open("ab") as out:
            for _ in range(count):
                child = await asyncio.create_subprocess_exec(
                    sys.executable,
                    *argv,
                    env=dict(env),
                    stdin=asyncio.subprocess.PIPE if pipes else asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.PIPE if pipes else out,
                    stderr=out,
                )
                self.children.append(child)

    def check_alive(self) -> None:
        for child in self.children:
            if child.returncode is not None:
                raise BenchError(
                    f"a child process exited early with code {child.returncode}:\n"
                    f"{log_tail(self.log)}"
                )

    async def stop(self) -> list[int]:
        """SIGTERM all (a graceful stop), kill what has not exited in time; exit codes."""
        for child in self.children:
            if child.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    child.send_signal(signal.SIGTERM)
        codes = []
        for child in self.children:
            try:
                codes.append(await asyncio.wait_for(child.wait(), STOP_TIMEOUT_S))
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    child.kill()
                codes.append(await child.wait())
        return codes


@asynccontextmanager
async def process_group(log: Path) -> AsyncIterator[Processes]:
    group = Processes(log)
    try:
        yield group
    finally:
        await group.stop()


def worker_argv(concurrency: int) -> list[str]:
    return ["-m", "mailq.worker", "--log-level", "WARNING", "--concurrency", str(concurrency)]


def bare_loop_argv(batch: int, *, ahead: bool = False) -> list[str]:
    return ["-m", "bench.bare_loop", "--batch", str(batch), *(["--ahead"] if ahead else [])]


def environ() -> dict[str, str]:
    """The bench's own environment, handed on to its children (PATH, PYTHONPATH, …)."""
    return dict(os.environ)
