"""The SMTP ceiling: a bare aiosmtplib client that sends one prepared message over and over
on C connections (MAIL, RCPT, DATA on each, as mailq's sender does), `--count` in all.

`python -m mailq.bench.smtp_client --port P --count N --connections C` prints JSON with the
seconds from the first connection to the last reply."""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import time

import aiosmtplib

MESSAGE = (
    b"From: Platform <hello@example.com>\r\n"
    b"To: user@example.com\r\n"
    b"Subject: Welcome to the platform, User 1\r\n"
    b"Message-ID: <bench.1@example.com>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: 7bit\r\n"
    b"\r\n"
    b"Hello User 1,\r\n\r\nthank you for signing up. Your account acct-00000001 is ready: sign in "
    b"at any time to\r\nbuild your portfolio, and reply to this email if anything is unclear."
    b"\r\n\r\nThe team\r\n"
)


async def connection(host: str, port: int, tickets: itertools.count[int], count: int) -> int:
    client = aiosmtplib.SMTP(hostname=host, port=port, start_tls=False)
    await client.connect()
    sent = 0
    try:
        while next(tickets) < count:
            await client.mail("hello@example.com")
            await client.rcpt(f"user{sent}@example.com")
            await client.data(MESSAGE)
            sent += 1
    finally:
        await client.quit()
    return sent


async def run(host: str, port: int, count: int, connections: int) -> dict[str, float]:
    tickets = itertools.count()
    started = time.perf_counter()
    sent = await asyncio.gather(
        *(connection(host, port, tickets, count) for _ in range(connections))
    )
    seconds = time.perf_counter() - started
    return {"sent": sum(sent), "seconds": seconds}


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m mailq.bench.smtp_client")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--connections", type=int, default=4)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.host, args.port, args.count, args.connections))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
