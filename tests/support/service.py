"""A real `uvicorn service.app:app` in a subprocess, for the acceptance tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.support.processes import REPO
from tests.support.smtp import free_port


def service_env(database_url: str, backend: str, home: Path, **settings: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("MAILQ_") and k != "PROMETHEUS_MULTIPROC_DIR"
    }
    metrics = home / "metrics"
    metrics.mkdir(parents=True, exist_ok=True)
    env.update(
        {
            "MAILQ_DATABASE_URL": database_url,
            "MAILQ_BACKEND": backend,
            "MAILQ_HOME": str(home),
            "PROMETHEUS_MULTIPROC_DIR": str(metrics),
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update({f"MAILQ_{k.upper()}": v for k, v in settings.items()})
    return env


def wait_ready(base_url: str, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the service exited with {process.returncode} while starting")
        try:
            if httpx.get(f"{base_url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"the service was not ready within {timeout}s")


@contextmanager
def uvicorn(
    env: Mapping[str, str], workers: int, log: Path, *command: str
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`uvicorn service.app:app --workers N` on a free loopback port (or `command`, with
    {port} filled in); yields its base URL and process, stops it with SIGTERM."""
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "uvicorn",
        "service.app:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    if command:
        argv = [part.format(port=port) for part in command]
    with open(log, "ab") as out:
        process = subprocess.Popen(argv, env=dict(env), cwd=REPO, stdout=out, stderr=out)
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base_url, process)
        yield base_url, process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=30)
