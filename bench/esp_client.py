"""The ESP ceiling: a bare httpx client posting Postmark batches (bench/esp.py).

    python -m bench.esp_client --url URL --count N --batch B --connections C

One httpx.AsyncClient configured as mailq's ESP sender is (HTTP/2 where offered, at most C
connections kept alive), posting `/email/batch` requests of B messages shaped as mailq's
Postmark backend shapes them (From, To, Subject, TextBody, Headers with the Message-ID,
Tag, Metadata naming the email), C // B requests at a time (at most C messages in flight,
as a mailq worker of concurrency C holds), until N messages were accepted. Prints JSON:
messages accepted, seconds from the first request to the last answer, and the CPU seconds
(user + system) this process spent meanwhile.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson

from bench.workload import TEXT

TOKEN = "bench-server-token"


def body(n: int) -> dict[str, Any]:
    message_id = f"<bench.{n}@example.com>"
    return {
        "From": "Platform <hello@example.com>",
        "To": f"user{n}@example.com",
        "Subject": f"Welcome to the platform, User {n}",
        "TextBody": TEXT.replace("{{ name }}", f"User {n}").replace(
            "{{ account }}", f"acct-{n:08d}"
        ),
        "Headers": [{"Name": "Message-ID", "Value": message_id}],
        "Tag": "welcome",
        "Metadata": {"mailq_email_id": str(n), "mailq_message_id": message_id},
    }


async def poster(client: httpx.AsyncClient, batches: Iterator[range]) -> int:
    accepted = 0
    for batch in batches:
        content = orjson.dumps([body(n) for n in batch])
        response = await client.post(
            "/email/batch", content=content, headers={"Content-Type": "application/json"}
        )
        answer = orjson.loads(response.content)
        if response.status_code != 200 or len(answer) != len(batch):
            raise RuntimeError(f"the server answered {response.status_code}: {answer!r:.200}")
        accepted += sum(1 for item in answer if item.get("ErrorCode") == 0)
    return accepted


async def run(url: str, count: int, batch: int, connections: int) -> dict[str, float]:
    async with httpx.AsyncClient(
        base_url=url,
        headers={"X-Postmark-Server-Token": TOKEN, "Accept": "application/json"},
        http2=True,
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        timeout=httpx.Timeout(120.0, connect=10.0),
    ) as client:
        batches = iter([range(i, min(i + batch, count)) for i in range(0, count, batch)])
        in_flight = max(1, connections // batch)
        cpu_before = time.process_time()
        started = time.perf_counter()
        accepted = await asyncio.gather(*(poster(client, batches) for _ in range(in_flight)))
        seconds = time.perf_counter() - started
        cpu_s = time.process_time() - cpu_before
    return {"sent": sum(accepted), "seconds": seconds, "cpu_s": cpu_s}


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.esp_client")
    parser.add_argument("--url", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--batch", type=int, required=True)
    parser.add_argument("--connections", type=int, required=True)
    args = parser.parse_args()
    result = asyncio.run(run(args.url, args.count, args.batch, args.connections))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
