"""Campaign: a campaign of 1,000,000 recipients created from an iterator, timed, with the
peak RSS of the process that creates it (mailq/bench/campaign_run.py, run as a subprocess
so that nothing else of the bench counts in its memory)."""

from __future__ import annotations

import asyncio
import json
import sys

from bench.databases import BenchError
from bench.plan import MAILQ, Context, Measurement, Sample
from bench.processes import log_tail


async def create(ctx: Context) -> Sample:
    count = ctx.options.campaign_recipients
    log = ctx.logs / "campaign.log"
    async with ctx.server.fresh_database("camp") as url:
        env = {k: v for k, v in ctx.env.items() if not k.startswith("MAILQ_")}
        env["MAILQ_BENCH_DATABASE_URL"] = url
        with log.open("ab") as err:
            child = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bench.campaign_run", "--recipients", str(count),
                env=env, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=err,
            )  # fmt: skip
            out, _ = await child.communicate()
    if child.returncode:
        raise BenchError(f"the campaign run exited with {child.returncode}:\n{log_tail(log)}")
    result = json.loads(out.decode().strip().splitlines()[-1])
    if result["added"] != count:
        raise BenchError(f"the campaign added {result['added']} of {count} recipients")
    return Sample(
        {
            "seconds": result["seconds"],
            "peak_rss_mb": result["peak_rss_mb"],
            "rate": count / result["seconds"],
        },
        details=result,
    )


def measurements(count: int) -> tuple[Measurement, ...]:
    return (
        Measurement("campaign/mailq", "campaign", MAILQ, "s", {"recipients": count}, create,
                    headline="seconds"),
    )  # fmt: skip
