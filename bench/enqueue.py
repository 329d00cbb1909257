"""Enqueue rates: mailq.enqueue in bulk (the COPY path) and one email at a time, next to a
bare COPY of the same payloads into the bare loop's table."""

from __future__ import annotations

import time

import asyncpg

from bench import workload
from bench.plan import BARE, MAILQ, Context, Measurement, Sample
from bench.sql import BENCH_QUERIES
from mailq.enqueue import enqueue


async def mailq_bulk(ctx: Context) -> Sample:
    count = ctx.options.emails
    batch = workload.emails(count)  # built by the caller, as an application would
    async with ctx.server.fresh_database("enq") as url:
        conn = await asyncpg.connect(url)
        try:
            started = time.perf_counter()
            ids = await enqueue(conn, *batch)
            seconds = time.perf_counter() - started
        finally:
            await conn.close()
    if len(ids) != count:
        raise AssertionError(f"enqueue returned {len(ids)} ids for {count} emails")
    return Sample({"rate": count / seconds}, details={"emails": count, "seconds": seconds})


async def bare_copy(ctx: Context) -> Sample:
    count = ctx.options.emails
    payload = workload.payload()
    async with ctx.server.fresh_database("copy") as url:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(BENCH_QUERIES["bench_jobs_create"])
            started = time.perf_counter()
            await conn.copy_records_to_table(
                "bench_jobs",
                schema_name="public",
                columns=("payload",),
                records=((payload,) for _ in range(count)),
            )
            seconds = time.perf_counter() - started
            written = await conn.fetchval(BENCH_QUERIES["bench_jobs_copy_probe"])
        finally:
            await conn.close()
    if written != count:
        raise AssertionError(f"the bare COPY wrote {written} rows of {count}")
    return Sample({"rate": count / seconds}, details={"rows": count, "seconds": seconds})


async def mailq_one_at_a_time(ctx: Context) -> Sample:
    count = ctx.options.one_at_a_time
    batch = workload.emails(count)
    async with ctx.server.fresh_database("enq1") as url:
        conn = await asyncpg.connect(url)
        try:
            started = time.perf_counter()
            for email in batch:
                await enqueue(conn, email)  # each its own transaction, as a web request would
            seconds = time.perf_counter() - started
        finally:
            await conn.close()
    return Sample({"rate": count / seconds}, details={"emails": count, "seconds": seconds})


def bulk_measurements(ctx_emails: int) -> tuple[Measurement, ...]:
    params = {"emails": ctx_emails}
    return (
        Measurement("enqueue_bulk/mailq", "enqueue_bulk", MAILQ, "emails/s", params, mailq_bulk),
        Measurement("enqueue_bulk/bare", "enqueue_bulk", BARE, "rows/s", params, bare_copy),
    )


def one_measurements(count: int) -> tuple[Measurement, ...]:
    return (
        Measurement(
            "enqueue_one/mailq",
            "enqueue_one",
            MAILQ,
            "emails/s",
            {"emails": count},
            mailq_one_at_a_time,
        ),
    )
