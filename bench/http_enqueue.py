"""HTTP enqueue rate and latency: the service (`uvicorn service.app:app --workers N`) next
to a bare Starlette endpoint doing one INSERT (bench/bare_app.py), same load, same run.

Loopback only; bounded in requests and time. Each target gets a fresh database, a warm-up,
then `--requests` POSTs from `--clients` keep-alive connections (a minimal HTTP/1.1 client,
so that the client costs little of the machine's CPU). Prints one JSON object.

    python bench/http_enqueue.py --workers 4 --clients 50 --requests 10000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg
import psycopg

from mailq.db.schema import migrate

REPO = Path(__file__).resolve().parent.parent

TOKEN = "bench-client-token"
BODY = json.dumps(
    {
        "to": "someone@example.com",
        "subject": "Welcome, {{ name }}",
        "text": "Hello {{ name }}, glad you are here.",
        "context": {"name": "Ada"},
        "metadata": {"user_id": "42"},
    }
).encode()
LENGTH = re.compile(rb"content-length:\s*(\d+)", re.IGNORECASE)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def request_bytes(port: int) -> bytes:
    head = (
        f"POST /v1/emails HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(BODY)}\r\n\r\n"
    )
    return head.encode() + BODY


async def one_connection(
    port: int, requests: list[int], deadline: float, latencies: list[float], statuses: Counter[int]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    payload = request_bytes(port)
    try:
        while requests and time.monotonic() < deadline:
            requests.pop()
            started = time.perf_counter()
            writer.write(payload)
            head = await reader.readuntil(b"\r\n\r\n")
            match = LENGTH.search(head)
            await reader.readexactly(int(match.group(1)) if match else 0)
            latencies.append(time.perf_counter() - started)
            statuses[int(head[9:12])] += 1
    finally:
        writer.close()


async def load(port: int, clients: int, total: int, time_limit: float) -> dict[str, Any]:
    requests = list(range(total))
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    deadline = time.monotonic() + time_limit
    started = time.perf_counter()
    await asyncio.gather(
        *(one_connection(port, requests, deadline, latencies, statuses) for _ in range(clients))
    )
    elapsed = time.perf_counter() - started
    latencies.sort()

    def pct(p: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000, 2)

    return {
        "requests": len(latencies),
        "seconds": round(elapsed, 2),
        "rate_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "mean_ms": round(statistics.fmean(latencies) * 1000, 2),
        "statuses": dict(statuses),
    }


def wait_up(port: int, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("server did not start")


async def connections(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid()"
            )
        )
    finally:
        await conn.close()


def run_target(
    name: str, app: str, admin_url: str, args: argparse.Namespace, embedded: str
) -> dict[str, Any]:
    database = f"mailq_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {database}")  # type: ignore[arg-type]
    url = re.sub(r"/[^/]*$", f"/{database}", admin_url)
    port = free_port()
    home = Path(tempfile.mkdtemp(prefix="mailq-bench-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILQ_")}
    env.update(
        {
            "MAILQ_DATABASE_URL": url,
            "MAILQ_BACKEND": "null://",
            "MAILQ_HOME": str(home),
            "MAILQ_API_TOKEN": TOKEN,
            "MAILQ_ADMIN_TOKEN": TOKEN + "-admin",
            "MAILQ_EMBEDDED_WORKER": embedded,
            "PROMETHEUS_MULTIPROC_DIR": str(home),
        }
    )
    process = None
    try:
        migrate(url)
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                app,
                "--port",
                str(port),
                "--workers",
                str(args.workers),
                "--no-access-log",
                "--log-level",
                "warning",
            ],
            cwd=REPO,
            env=env,
        )
        wait_up(port, process)
        time.sleep(1.0)  # let every worker process bind and start
        asyncio.run(load(port, args.clients, args.warmup, args.time_limit))
        result = asyncio.run(load(port, args.clients, args.requests, args.time_limit))
        result["pg_connections"] = asyncio.run(connections(url))
        result["target"] = name
        return result
    finally:
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")  # type: ignore[arg-type]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--admin-url",
        default=os.environ.get(
            "MAILQ_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--requests", type=int, default=6000)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--time-limit", type=float, default=60.0)
    parser.add_argument(
        "--embedded", default="1", choices=["0", "1"], help="embedded workers in the service"
    )
    args = parser.parse_args()
    results = [
        run_target("bare INSERT", "bench.bare_app:app", args.admin_url, args, "0"),
        run_target(
            f"service (embedded worker={args.embedded})",
            "mailq.service.app:app",
            args.admin_url,
            args,
            args.embedded,
        ),
    ]
    print(json.dumps({"workers": args.workers, "clients": args.clients, "results": results}))


if __name__ == "__main__":
    main()
