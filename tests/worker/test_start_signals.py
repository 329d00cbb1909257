"""A worker process told to stop while it starts exits 0 (SPEC.md), not of the signal."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import asyncpg
import pytest

from mailq.startup import starting_a_worker
from tests.support.processes import start_worker, worker_env
from tests.support.waiting import eventually


def catches(pid: int, sig: int) -> bool:
    """Whether the process has a handler for `sig` (its SigCgt mask in /proc)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    for line in status.splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (sig - 1) & 1)
    return False


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_a_signal_while_it_imports_exits_0(
    database_url: str, conn: asyncpg.Connection, tmp_path: Path, sig: int
) -> None:
    log = tmp_path / "worker.log"
    process = start_worker(worker_env(database_url, "null://"), log=log)
    try:

        async def caught() -> bool:
            # SIGTERM: mailq catches both at once. (Python has its own SIGINT handler from
            # its start, which raises KeyboardInterrupt: no sign of mailq's.)
            return catches(process.pid, signal.SIGTERM)

        # From the first lines mailq runs (while it still imports its drivers).
        await eventually(caught, timeout=30, interval=0.005, message="no handler")
        process.send_signal(sig)
        code = await asyncio.to_thread(process.wait, 60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(30)
    assert code == 0, log.read_text()
    assert "Traceback" not in log.read_text()
    # It stopped before it started: it never registered.
    assert await conn.fetchval("SELECT count(*) FROM mailq.worker_leases") == 0


def test_only_a_worker_process_catches_them() -> None:
    assert starting_a_worker(["/usr/bin/python3", "-m", "mailq.worker", "--kinds", "welcome"])
    assert starting_a_worker(["python", "-X", "dev", "-mmailq.worker"])
    assert not starting_a_worker(["python", "-m", "uvicorn", "mailq.service.app:app"])
    assert not starting_a_worker(["python", "app.py", "mailq.worker"])
    assert not starting_a_worker(["python"])
