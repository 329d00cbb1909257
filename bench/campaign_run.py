"""One campaign of N recipients created from an iterator (mailq.campaigns.create_campaign),
in a process of its own so that its peak memory is the campaign's: `python -m
mailq.bench.campaign_run --recipients N` with MAILQ_BENCH_DATABASE_URL set prints JSON with
the seconds the call took and the process's peak RSS (ru_maxrss) before and after."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import asyncpg

from mailq.campaigns import NewCampaign, Recipient, create_campaign

DSN_VARIABLE = "MAILQ_BENCH_DATABASE_URL"


def recipients(count: int) -> Iterator[Recipient]:
    for n in range(count):
        yield Recipient(f"reader{n}@example.com", {"name": f"Reader {n}"})


def peak_rss_mb() -> float:
    """This process's peak RSS. Linux's ru_maxrss outlives exec (it would report the bench
    process that started this one), so the peak of this process's own memory (VmHWM) is
    read where there is one."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


async def run(url: str, count: int) -> dict[str, float]:
    conn = await asyncpg.connect(url)
    try:
        before = peak_rss_mb()
        campaign = NewCampaign(
            name="November newsletter",
            kind="platform_complete",
            send_at=datetime.now(UTC) + timedelta(days=1),
            subject="What is new this month, {{ name }}",
            text="Hello {{ name }},\n\nhere is what changed on the platform this month.\n",
        )
        started = time.perf_counter()
        _, added = await create_campaign(conn, campaign, recipients(count))
        seconds = time.perf_counter() - started
    finally:
        await conn.close()
    return {
        "recipients": count,
        "added": added.added,
        "seconds": seconds,
        "peak_rss_mb": peak_rss_mb(),
        "rss_before_mb": before,
    }


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m mailq.bench.campaign_run")
    parser.add_argument("--recipients", type=int, required=True)
    args = parser.parse_args()
    url = os.environ.get(DSN_VARIABLE)
    if not url:
        print(f"{DSN_VARIABLE} is not set", file=sys.stderr)
        return 2
    print(json.dumps(asyncio.run(run(url, args.recipients))), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
