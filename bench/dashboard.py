"""Dashboard: the server time of every page (its Server-Timing header: queries and rendering)
on a database holding the history's finished emails (10,000,000 in the full run) plus
100,000 waiting, a few hundred failed and unknown, and a campaign; and the database time of
the overview's live update (what every server-sent event costs); of each, the time its
queries took (`*_db_ms`). `--history-emails` and `--dashboard-waiting` set the size,
`--history-database` measures on copies of a history filled once beforehand.

The first look at a day of history counts it into the attempt-rate rollup, a bounded slice
per page view; the run first loads the overview until that is done and reports how long it
took (`rollup_fill_s`), then measures the pages as an operator sees them afterwards.
"""

from __future__ import annotations

import asyncio
import re
import statistics
import time
from typing import Any

import asyncpg
import httpx

from bench import history, workload
from bench.databases import BenchError
from bench.plan import MAILQ, Context, Measurement, Sample
from bench.processes import child_env, log_tail, process_group
from bench.sql import BENCH_QUERIES

ADMIN = "mqa_bench-dashboard-admin"
CLIENT = "mqc_bench-dashboard-client"
VIEWER = "mqv_bench-dashboard-viewer"
PAGES = (
    ("overview", "/dashboard"),
    ("emails", "/dashboard/emails"),
    ("emails_by_address", "/dashboard/emails?q=user12345%40example.com"),
    ("emails_by_state", "/dashboard/emails?state=queued"),
    ("emails_by_time", "/dashboard/emails?from=2000-01-01T00%3A00&to=2100-01-01T00%3A00"),
    ("email", "/dashboard/emails/{email}"),
    ("failures_24h", "/dashboard/failures?window=24h"),
    ("failures_7d", "/dashboard/failures?window=7d"),
    ("campaigns", "/dashboard/campaigns"),
    ("campaign", "/dashboard/campaigns/{campaign}"),
    ("kinds", "/dashboard/kinds"),
    ("workers", "/dashboard/workers"),
    ("suppressions", "/dashboard/suppressions"),
    ("unknown", "/dashboard/unknown"),
    ("live_json", "/dashboard/live.json"),
)
ROUNDS = 5
FILL_TIMEOUT_S = 900.0
READY_TIMEOUT_S = 120.0
_TIMING = re.compile(r"page;dur=([0-9.]+), db;dur=([0-9.]+)")


async def _prepare(url: str, waiting: int) -> dict[str, int]:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(BENCH_QUERIES["bench_history_async_commit"])
        await conn.execute(BENCH_QUERIES["bench_dashboard_waiting"], waiting, workload.payload())
        await conn.execute(BENCH_QUERIES["bench_dashboard_failed"], workload.payload())
        campaign = await conn.fetchval(BENCH_QUERIES["bench_dashboard_campaign"])
        # What autovacuum does to tables that grew: BRIN ranges summarised, visibility map
        # set, fresh statistics.
        await conn.execute(BENCH_QUERIES["bench_dashboard_vacuum_attempts"])
        await conn.execute(BENCH_QUERIES["bench_dashboard_vacuum_emails"])
        email = await conn.fetchval(BENCH_QUERIES["bench_emails_max_id"])
    finally:
        await conn.close()
    return {"campaign": int(campaign), "email": int(email) // 2}


async def _sign_in(http: httpx.AsyncClient) -> None:
    form = await http.get("/dashboard/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    if csrf is None:
        raise BenchError("the dashboard's login form has no CSRF token")
    signed = await http.post(
        "/dashboard/login",
        data={"csrf": csrf.group(1), "token": ADMIN, "next": "/dashboard"},
        headers={"Origin": str(http.base_url).rstrip("/")},
    )
    if signed.status_code != 303:
        raise BenchError(f"signing in to the dashboard answered {signed.status_code}")


def _server_ms(response: httpx.Response) -> tuple[float, float]:
    """The page's server time and, of it, its queries' time (ms)."""
    found = _TIMING.search(response.headers.get("server-timing", ""))
    if response.status_code != 200 or found is None:
        raise BenchError(f"{response.request.url.path} answered {response.status_code}")
    return float(found.group(1)), float(found.group(2))


async def _wait_ready(base_url: str, group: Any) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    async with httpx.AsyncClient(base_url=base_url) as http:
        while time.monotonic() < deadline:
            group.check_alive()
            try:
                if (await http.get("/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
    raise BenchError("the service did not become ready")


async def _sse_update_ms(url: str) -> tuple[float, float]:
    """The hub's update as the service runs it for every server-sent event: its time and
    its queries' time (ms)."""
    from mailq.service.dashboard import overview, timing

    pool = await asyncpg.create_pool(url, min_size=1, max_size=4, init=timing.install)
    try:
        times, db = [], []
        for _ in range(ROUNDS + 1):
            began = time.perf_counter()
            with timing.measuring() as spent:
                await overview.snapshot(pool)
                times.append((time.perf_counter() - began) * 1000)
                db.append(await timing.settled(spent) * 1000)
        return statistics.median(times[1:]), statistics.median(db[1:])
    finally:
        await pool.close()


async def pages(ctx: Context) -> Sample:
    template = await history.history_template(ctx)
    big = ctx.options.history_emails >= history.FILE_COPY_FROM
    log = ctx.logs / "dashboard.log"
    async with ctx.server.fresh_database("dash", template=template, file_copy=big) as url:
        ids = await _prepare(url, ctx.options.dashboard_waiting)
        port = _free_port()
        env = child_env(
            ctx.env, database_url=url, backend="null://", home=str(ctx.logs / "dashboard-home"),
            api_token=CLIENT, admin_token=ADMIN, viewer_token=VIEWER,
            secret_key="bench-dashboard", embedded_worker="0",
        )  # fmt: skip
        argv = ["-m", "uvicorn", "mailq.service.app:app", "--port", str(port),
                "--log-level", "warning"]  # fmt: skip
        figures: dict[str, float] = {}
        async with process_group(log) as group:
            await group.start(argv, env, count=1)
            base_url = f"http://127.0.0.1:{port}"
            await _wait_ready(base_url, group)
            async with httpx.AsyncClient(base_url=base_url, timeout=120) as http:
                await _sign_in(http)
                began = time.perf_counter()
                while "Counting" in (await http.get("/dashboard")).text:
                    if time.perf_counter() - began > FILL_TIMEOUT_S:
                        raise BenchError(f"the rollup did not fill:\n{log_tail(log)}")
                figures["rollup_fill_s"] = time.perf_counter() - began
                for name, path in PAGES:
                    target = path.format(**ids)
                    await http.get(target)  # warm: plans cached, pages read once
                    times = [_server_ms(await http.get(target)) for _ in range(ROUNDS)]
                    figures[f"{name}_ms"] = statistics.median(t for t, _ in times)
                    figures[f"{name}_db_ms"] = statistics.median(d for _, d in times)
        figures["sse_update_ms"], figures["sse_update_db_ms"] = await _sse_update_ms(url)
    page_keys = [f"{name}_ms" for name, _ in PAGES]
    figures["slowest_page_ms"] = max(figures[k] for k in page_keys)
    return Sample(
        figures,
        details={
            "history_emails": ctx.options.history_emails,
            "waiting": ctx.options.dashboard_waiting,
        },
    )


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def measurements(history_emails: int, waiting: int) -> tuple[Measurement, ...]:
    params = {"finished": history_emails, "waiting": waiting}
    return (
        Measurement("dashboard/mailq", "dashboard", MAILQ, "ms", params, pages,
                    headline="slowest_page_ms"),
    )  # fmt: skip
