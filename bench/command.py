"""`mailq bench`: run every measurement, interleaved over rounds, and write the results."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from bench import (
    campaign,
    dashboard,
    drain,
    enqueue,
    esp,
    history,
    peers,
    plots,
    report,
    smtp,
    vacuum,
    wakeup,
)
from bench.databases import Server
from bench.plan import Context, Group, Options, Sample
from bench.processes import environ
from bench.sql import BENCH_QUERIES
from mailq import __version__
from mailq.errors import UsageError
from mailq.settings import Settings

MEASURES = (
    "enqueue_bulk",
    "enqueue_one",
    "drain",
    "wakeup",
    "history",
    "campaign",
    "smtp",
    "dashboard",
    "esp",
    "vacuum",
)
RESULTS_DIR = Path("bench-results")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = Options()
    parser.add_argument(
        "--quick", action="store_true", help="small numbers, one round (seconds; the test suite)"
    )
    parser.add_argument("--repeat", type=int, help=f"rounds; medians over them ({defaults.repeat})")
    parser.add_argument(
        "--emails", type=int, help=f"emails to enqueue and drain ({defaults.emails:,})"
    )
    parser.add_argument(
        "--one-at-a-time", type=int, help=f"emails enqueued singly ({defaults.one_at_a_time:,})"
    )
    parser.add_argument(
        "--processes", help="worker process counts to drain with, e.g. 1,2,4 (the default)"
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        dest="drain_concurrency",
        help=f"each drain worker's sends in flight ({defaults.concurrency})",
    )
    parser.add_argument(
        "--wakeup-emails", type=int, help=f"emails of the wake-up run ({defaults.wakeup_emails})"
    )
    parser.add_argument(
        "--history-emails",
        type=int,
        help=f"finished emails in the history database ({defaults.history_emails:,})",
    )
    parser.add_argument(
        "--dashboard-waiting",
        type=int,
        help=f"waiting emails beside the history in the dashboard measure "
        f"({defaults.dashboard_waiting:,})",
    )
    parser.add_argument(
        "--history-database",
        help="an existing database mailq_bench_<name> (on the same server, migrated) that "
        "already holds the finished emails: the history and dashboard measures work on copies "
        "of it (the history is not written again; --history-emails says how many it holds)",
    )
    parser.add_argument(
        "--campaign-recipients",
        type=int,
        help=f"recipients of the campaign measure ({defaults.campaign_recipients:,})",
    )
    parser.add_argument(
        "--smtp-emails", type=int, help=f"emails sent into the SMTP sink ({defaults.smtp_emails:,})"
    )
    parser.add_argument(
        "--esp-emails", type=int, help=f"emails sent through postmark:// ({defaults.esp_emails:,})"
    )
    parser.add_argument(
        "--esp-latency-ms",
        type=float,
        help=f"the Postmark-like server's time to answer ({defaults.esp_latency_ms:g} ms)",
    )
    parser.add_argument(
        "--vacuum-hold-s",
        type=float,
        help="seconds the forgotten transaction of the vacuum measure stays open "
        f"({defaults.vacuum_hold_s:g}; the drain before and after it: a quarter and half of "
        "that, at least 3 s)",
    )
    parser.add_argument(
        "--no-peers",
        dest="peers",
        action="store_false",
        default=None,
        help="measure mailq and the bare loop only, even where the peers are installed",
    )
    parser.add_argument(
        "--plots",
        help="directory for the PNG plots (default: next to the JSON file; needs matplotlib)",
    )
    parser.add_argument("--only", help=f"comma-separated subset of {', '.join(MEASURES)}")
    parser.add_argument(
        "--output", help="the JSON file (default bench-results/bench-<timestamp>.json)"
    )
    # Also after the command; SUPPRESS keeps a value given before it.
    parser.add_argument(
        "--database-url",
        default=argparse.SUPPRESS,
        help="admin URL of the server to measure on (MAILQ_DATABASE_URL); the bench creates "
        "and drops its own databases there",
    )


def options_from_args(args: argparse.Namespace) -> Options:
    options = Options.quick() if args.quick else Options()
    changes: dict[str, Any] = {}
    for name, flag in (
        ("repeat", "repeat"),
        ("emails", "emails"),
        ("one_at_a_time", "one_at_a_time"),
        ("concurrency", "drain_concurrency"),
        ("wakeup_emails", "wakeup_emails"),
        ("history_emails", "history_emails"),
        ("campaign_recipients", "campaign_recipients"),
        ("dashboard_waiting", "dashboard_waiting"),
        ("smtp_emails", "smtp_emails"),
        ("esp_emails", "esp_emails"),
    ):
        value = getattr(args, flag, None)
        if value is not None:
            if value < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be at least 1")
            changes[name] = value
    if args.esp_latency_ms is not None:
        if not 0 <= args.esp_latency_ms <= 60_000:
            raise UsageError("--esp-latency-ms must be between 0 and 60000")
        changes["esp_latency_ms"] = args.esp_latency_ms
    if args.processes:
        try:
            counts = tuple(int(p) for p in args.processes.split(",") if p.strip())
        except ValueError:
            raise UsageError("--processes: a comma-separated list of whole numbers") from None
        if not counts or min(counts) < 1:
            raise UsageError("--processes: a comma-separated list of whole numbers ≥ 1")
        changes["processes"] = counts
    if getattr(args, "history_database", None):
        if not re.fullmatch(r"mailq_bench_[a-z0-9_]{1,40}", args.history_database):
            raise UsageError("--history-database: a name mailq_bench_<lowercase, digits, _>")
        changes["history_database"] = args.history_database
    if args.vacuum_hold_s is not None:
        hold = args.vacuum_hold_s
        if not 1 <= hold <= 3600:
            raise UsageError("--vacuum-hold-s must be between 1 and 3600")
        changes.update(
            vacuum_hold_s=hold,
            vacuum_before_s=max(3.0, hold / 4),
            vacuum_after_s=max(3.0, hold / 2),
        )
    if args.peers is False:
        changes["peers"] = False
    if args.only:
        only = frozenset(m.strip() for m in args.only.split(",") if m.strip())
        unknown = only - set(MEASURES)
        if unknown:
            raise UsageError(f"--only: unknown measure(s) {', '.join(sorted(unknown))}")
        changes["only"] = only
    return replace(options, **changes)


def plan(options: Options) -> list[Group]:
    groups: list[Group] = []
    others = peers.available() if options.peers else ()
    if options.wants("enqueue_bulk"):
        members = enqueue.bulk_measurements(options.emails)
        members += peers.enqueue_bulk_measurements(others, options.emails)
        groups.append(Group("enqueue_bulk", members))
    if options.wants("enqueue_one"):
        members = enqueue.one_measurements(options.one_at_a_time)
        members += peers.enqueue_one_measurements(others, options.one_at_a_time)
        groups.append(Group("enqueue_one", members))
    if options.wants("drain"):
        for n in options.processes:
            members = drain.measurements(n, options.emails, options.concurrency, options.batch)
            members += peers.drain_measurements(others, n, options.emails)
            groups.append(Group(f"drain_{n}", members))
    if options.wants("wakeup"):
        members = wakeup.measurements(
            options.wakeup_emails, options.wakeup_rate, options.wakeup_workers
        )
        members += peers.wakeup_measurements(others, options.wakeup_emails)
        groups.append(Group("wakeup", members))
    if options.wants("history"):
        groups.append(
            Group("history", history.measurements(options.emails, options.history_emails))
        )
    if options.wants("campaign"):
        groups.append(Group("campaign", campaign.measurements(options.campaign_recipients)))
    if options.wants("dashboard"):
        members = dashboard.measurements(options.history_emails, options.dashboard_waiting)
        groups.append(Group("dashboard", members))
    if options.wants("smtp") and smtp.sink_kind() is not None:
        members = smtp.measurements(options.smtp_emails, options.smtp_processes)
        groups.append(Group("smtp", members))
    if options.wants("esp") and esp.available():
        members = esp.measurements(options.esp_emails, options.concurrency, options.esp_latency_ms)
        groups.append(Group("esp", members))
    if options.wants("vacuum"):
        members = vacuum.measurements(
            options.concurrency,
            options.vacuum_before_s,
            options.vacuum_hold_s,
            options.vacuum_after_s,
        )
        groups.append(Group("vacuum", members))
    return groups


async def environment(admin_url: str) -> dict[str, Any]:
    conn = await asyncpg.connect(admin_url)
    try:
        row = await conn.fetchrow(BENCH_QUERIES["bench_server_facts"])
    finally:
        await conn.close()
    return {
        "postgres_version": str(row["server_version"]).split()[0],
        "postgres": row["version"],
        "fsync": row["fsync"],
        "synchronous_commit": row["synchronous_commit"],
        "shared_buffers": row["shared_buffers"],
        "max_connections": row["max_connections"],
        "python": platform.python_version(),
        "mailq": __version__,
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "load_average_at_start": list(os.getloadavg()),
    }


def _progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _describe(sample: Sample) -> str:
    figures = ", ".join(f"{k}={v:,.1f}" for k, v in sample.figures.items())
    counts = ", ".join(f"{k}={v}" for k, v in sample.counts.items())
    return f"{figures}{'; ' + counts if counts else ''}"


async def run(options: Options, admin_url: str, logs: Path) -> dict[str, Any]:
    groups = plan(options)
    if not groups:
        raise UsageError("nothing to measure")
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    env_facts = await environment(admin_url)
    env_facts["peers"] = peers.versions() if options.peers else "not measured (--no-peers)"
    env_facts["smtp_sink"] = smtp.sink_kind() or "none installed (SMTP not measured)"
    server = Server(admin_url)
    await server.prepare()
    ctx = Context(server=server, options=options, logs=logs, env=environ())
    samples: dict[str, list[Sample]] = {m.key: [] for g in groups for m in g.members}
    try:
        for round_ in range(options.repeat):
            for group in groups:
                # The order inside a group alternates, so neither system always goes first.
                members = group.members if round_ % 2 == 0 else tuple(reversed(group.members))
                for m in members:
                    began = time.perf_counter()
                    sample = await m.run(ctx)
                    samples[m.key].append(sample)
                    _progress(
                        f"[{round_ + 1}/{options.repeat}] {m.key}: {_describe(sample)} "
                        f"({time.perf_counter() - began:.1f}s)"
                    )
    finally:
        await server.close()
    results = {
        m.key: report.measurement_result(m, samples[m.key]) for g in groups for m in g.members
    }
    env_facts["load_average_at_end"] = list(os.getloadavg())
    env_facts.update(ctx.notes)
    return report.document(
        options=options,
        environment=env_facts,
        started_at=started_at,
        finished_at=datetime.now(UTC).isoformat(timespec="seconds"),
        groups=groups,
        results=results,
    )


def _output_path(args: argparse.Namespace) -> Path:
    if args.output:
        return Path(args.output)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return RESULTS_DIR / f"bench-{stamp}.json"


def run_from_args(args: argparse.Namespace, settings: Settings) -> int:
    admin_url = settings.database_url
    if not admin_url:
        raise UsageError(
            "mailq bench needs a Postgres admin URL: MAILQ_DATABASE_URL or --database-url "
            "(it creates and drops its own databases on that server)"
        )
    options = options_from_args(args)
    output = _output_path(args)
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mailq-bench-") as logs:
        doc = asyncio.run(run(options, admin_url, Path(logs)))
    output.write_text(json.dumps(doc, indent=2, default=str) + "\n", encoding="utf-8")
    table = report.markdown(doc, plan(options), options)
    output.with_suffix(".md").write_text(table, encoding="utf-8")
    print(table, end="")
    print(f"\nresults written to {output} and {output.with_suffix('.md')}")
    plot_dir = Path(args.plots) if args.plots else output.parent
    for line in plots.draw(doc, plot_dir, output.stem):
        print(line)
    summary = doc["summary"]
    return 1 if summary["duplicates"] or summary["lost"] else 0


__all__: Sequence[str] = ("add_arguments", "run_from_args")
