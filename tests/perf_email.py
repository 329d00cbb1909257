"""Measures two figures of the email features (not part of the test suite; pytest does not
collect it):

1. Campaign fan-out: recipients inserted per second by `create_campaign` from an iterator
   (default 1,000,000), with the process's peak RSS.
2. End-to-end send rate into a local SMTP server (aiosmtpd in a subprocess) by one mailq
   worker, next to a bare aiosmtplib client with the same number of connections sending
   the same number of messages to the same server, in the same run.

    MAILQ_TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres \\
        .venv/bin/python -m tests.perf_email [--recipients N] [--emails N] [--connections N]

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import aiosmtplib
import asyncpg

from mailq import Settings, enqueue
from mailq.campaigns import NewCampaign, Recipient, create_campaign
from mailq.sender import sender_from_url
from mailq.worker import Worker
from tests.support import postgres
from tests.support.emails import welcome
from tests.support.smtp import free_port


def recipients(n: int) -> Iterator[Recipient]:
    for i in range(n):
        yield Recipient(f"user{i}@example.com", {"name": f"User {i}"})


async def fan_out(url: str, n: int) -> dict[str, float]:
    conn = await asyncpg.connect(url)
    try:
        new = NewCampaign("Perf", "search_engine", datetime.now(UTC) + timedelta(days=1))
        started = time.perf_counter()
        _campaign, added = await create_campaign(conn, new, recipients(n))
        elapsed = time.perf_counter() - started
    finally:
        await conn.close()
    assert added.added == n
    return {
        "recipients": n,
        "seconds": round(elapsed, 2),
        "recipients_per_s": round(n / elapsed),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


SINK = "aiosmtpd.handlers.Sink"


SINK = "aiosmtpd.handlers.Sink"


def smtp_server() -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{port}", "-c", SINK],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            import socket

            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return server, port
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("aiosmtpd did not start")


async def bare_client(port: int, n: int, connections: int, data: bytes) -> float:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)

    async def one_connection() -> None:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False)
        await client.connect()
        while True:
            try:
                i = queue.get_nowait()
            except asyncio.QueueEmpty:
                break
            await client.sendmail("mailq@localhost", [f"user{i}@example.com"], data)
        await client.quit()

    started = time.perf_counter()
    await asyncio.gather(*(one_connection() for _ in range(connections)))
    return n / (time.perf_counter() - started)


async def end_to_end(url: str, port: int, n: int, connections: int, in_flight: int) -> float:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("TRUNCATE mailq.emails, mailq.attempts")
        await enqueue(conn, *(welcome(i) for i in range(n)))
        settings = Settings(database_url=url, concurrency=in_flight, secret_key="perf")
        sender = sender_from_url(f"smtp://127.0.0.1:{port}?tls=none", connections=connections)
        worker = Worker(settings, sender)
        started = time.perf_counter()
        await worker.run(until_empty=True)
        elapsed = time.perf_counter() - started
        sent = await conn.fetchval("SELECT count(*) FROM mailq.emails WHERE status = 'sent'")
    finally:
        await conn.close()
    assert sent == n, sent
    return n / elapsed


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--recipients", type=int, default=1_000_000)
    parser.add_argument("--emails", type=int, default=5_000)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument(
        "--in-flight", type=int, default=0, help="worker concurrency (default: connections)"
    )
    args = parser.parse_args()
    with postgres.server_url() as admin:
        name = f"mailq_perf_{uuid.uuid4().hex[:12]}"
        url = postgres.create_database(admin, name)
        try:
            postgres.migrate(url)
            result: dict[str, object] = {"fan_out": await fan_out(url, args.recipients)}
            server, port = smtp_server()
            try:
                sample = welcome(0)
                data = (
                    f"From: mailq@localhost\r\nTo: user0@example.com\r\nSubject: "
                    f"Welcome, user 0\r\nMessage-ID: <x@localhost>\r\n\r\n{sample.text}\r\n"
                ).encode()
                in_flight = args.in_flight or args.connections
                mailq_rate = await end_to_end(url, port, args.emails, args.connections, in_flight)
                bare_rate = await bare_client(port, args.emails, args.connections, data)
            finally:
                server.terminate()
                server.wait(timeout=10)
            result["send"] = {
                "emails": args.emails,
                "connections": args.connections,
                "worker_in_flight": args.in_flight or args.connections,
                "mailq_worker_per_s": round(mailq_rate),
                "bare_aiosmtplib_per_s": round(bare_rate),
                "ratio": round(mailq_rate / bare_rate, 2),
            }
        finally:
            postgres.drop_database(admin, name)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
