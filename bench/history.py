"""History: mailq's drain rate with millions of finished emails in the database, next to
its rate on an empty one (same processes, same emails, same round).

The finished emails (status sent, each with its sent attempt) are written once per run into
a copy of the template with INSERT … SELECT generate_series, then ANALYZE; every history
measurement clones that copy. The drain counts only the emails it queued itself.
"""

from __future__ import annotations

import time

import asyncpg

from bench import workload
from bench.databases import with_database
from bench.drain import mailq_drain
from bench.plan import HISTORY, MAILQ, Context, Measurement, Sample
from bench.sql import BENCH_QUERIES

PROCESSES = 2
_KEY = "history"
# From this many finished emails on, the history database is cloned file by file.
FILE_COPY_FROM = 1_000_000


async def history_template(ctx: Context) -> str:
    """The name of the database holding the finished emails (made on first use)."""
    server = ctx.server
    if ctx.options.history_database:
        return ctx.options.history_database
    if _KEY in server.templates:
        return server.templates[_KEY]
    name = await server.prepare_copy("hist")
    server.templates[_KEY] = name
    began = time.perf_counter()
    conn = await asyncpg.connect(with_database(server.admin_url, name))
    try:
        await conn.execute(BENCH_QUERIES["bench_history_async_commit"])
        await conn.execute(
            BENCH_QUERIES["bench_history_emails"], ctx.options.history_emails, workload.payload()
        )
        await conn.execute(BENCH_QUERIES["bench_history_attempts"])
        await conn.execute(BENCH_QUERIES["bench_history_analyze"])
        await conn.execute(BENCH_QUERIES["bench_history_checkpoint"])
    finally:
        await conn.close()
    ctx.notes["history_fill_seconds"] = time.perf_counter() - began
    return name


async def empty(ctx: Context) -> Sample:
    return await mailq_drain(ctx, PROCESSES)


async def with_history(ctx: Context) -> Sample:
    template = await history_template(ctx)
    sample = await mailq_drain(
        ctx, PROCESSES, template=template, file_copy=ctx.options.history_emails >= FILE_COPY_FROM
    )
    sample.details["history_emails"] = ctx.options.history_emails
    return sample


def measurements(count: int, history_emails: int) -> tuple[Measurement, ...]:
    common = {"processes": PROCESSES, "emails": count, "backend": "null://"}
    return (
        Measurement("history/mailq/empty", "history", MAILQ, "emails/s",
                    {**common, "finished_before": 0}, empty),
        Measurement("history/mailq/finished", "history", HISTORY, "emails/s",
                    {**common, "finished_before": history_emails}, with_history),
    )  # fmt: skip
