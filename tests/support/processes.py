"""Real worker processes for the concurrency and crash tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def worker_env(database_url: str, backend: str, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILQ_")}
    env.update(
        {
            "MAILQ_DATABASE_URL": database_url,
            "MAILQ_BACKEND": backend,
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update({f"MAILQ_{k.upper()}": v for k, v in settings.items()})
    return env


def start_worker(
    env: Mapping[str, str], *args: str, log: Path | None = None
) -> subprocess.Popen[bytes]:
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - closed by the OS
    return subprocess.Popen(
        [sys.executable, "-m", "mailq.worker", "--log-level", "INFO", *args],
        env=dict(env),
        cwd=REPO,
        stdout=out,
        stderr=out,
    )


def stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 60) -> int:
    if process.poll() is None:
        process.send_signal(sig)
    return process.wait(timeout=timeout)


@contextmanager
def workers(
    env: Mapping[str, str], count: int, *args: str, log: Path | None = None
) -> Iterator[list[subprocess.Popen[bytes]]]:
    processes = [start_worker(env, *args, log=log) for _ in range(count)]
    try:
        yield processes
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)
