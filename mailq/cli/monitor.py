"""The operator's monitor: `mailq status | pending | failed | retry | cancel | pause | resume |
prune`. A readable table by default, `--json` for machines; a bad id, kind or time is one
line on stderr and exit 2 (raised as UsageError, EmailNotFound or NotAllowed)."""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from mailq import admin
from mailq.cli import display
from mailq.cli.backends import backends_report, backends_table
from mailq.cli.bounce_rates import print_rates, rates_report
from mailq.cli.options import (
    add_command,
    connect,
    days,
    email_ids,
    list_limit,
    listed_kind,
    moment,
    paused_kind,
    settings_for,
)
from mailq.db.campaigns import campaign_progress_open
from mailq.db.emails import (
    email_count_by_state,
    email_count_finished_before,
    email_list_failed,
    email_list_pending,
)
from mailq.db.leases import worker_lease_list
from mailq.errors import UsageError
from mailq.kinds import BUILTIN_KINDS
from mailq.models import WAITING_STATES, EmailState

# The columns of `mailq status`, in the order an email goes through them.
STATES = (
    EmailState.SCHEDULED,
    EmailState.QUEUED,
    EmailState.SENDING,
    EmailState.RETRYING,
    EmailState.SENT,
    EmailState.FAILED,
    EmailState.CANCELLED,
    EmailState.UNKNOWN,
)
LIST_LIMIT = 50
CAMPAIGNS_SHOWN = 20


# -- status --------------------------------------------------------------------------------


async def cmd_status(args: argparse.Namespace) -> int:
    async with connect(args) as pool:
        counts = await email_count_by_state(pool)
        workers = await worker_lease_list(pool)
        paused = await admin.paused_kinds(pool)
        progress = await campaign_progress_open(pool, CAMPAIGNS_SHOWN)
        backends = await backends_report(pool)
        bounces = await rates_report(pool)
    report: dict[str, Any] = {
        "kinds": kinds_by_state(counts, paused),
        "workers": workers,
        "paused": paused,
        "campaigns": open_campaigns(progress),
        "unserved_kinds": admin.unserved_kinds(counts, workers, paused),
        "backends": backends,
        "bounces": bounces,
    }
    if args.json:
        display.print_json(report)
        return 0
    out = display.console()
    out.print(kinds_table(report["kinds"]))
    if not workers:
        out.print("Live workers: none (start one with `python -m mailq.worker`)")
    else:
        out.print(workers_table(workers))
    if paused:
        out.print(f"Paused kinds: {', '.join(paused)} (resume with `mailq resume KIND`)")
    for kind, waiting in report["unserved_kinds"].items():
        out.print(
            f"Warning: {waiting} emails of kind {kind} wait and no live worker serves it: "
            f"start one with `mailq worker --kinds {kind}` (a worker without --kinds serves "
            "the kinds built in or declared in MAILQ_CONFIG)"
        )
    if report["campaigns"]:
        out.print(campaigns_table(report["campaigns"]))
    if backends:
        out.print(backends_table(backends))
    print_rates(out, bounces)
    return 0


def kinds_by_state(counts: list[dict[str, Any]], paused: list[str]) -> list[dict[str, Any]]:
    """Rows of email_count_by_state, one entry per kind (built-in kinds even when empty)."""
    kinds: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"counts": dict.fromkeys(STATES, 0), "oldest_due_age_s": None}
    )
    for name in BUILTIN_KINDS:
        kinds[name]  # the built-in kinds show even when empty
    for row in counts:
        entry = kinds[row["kind"]]
        entry["counts"][row["state"]] = row["count"]
        if row["oldest_due_age_s"] is not None:
            entry["oldest_due_age_s"] = max(
                entry["oldest_due_age_s"] or 0.0, row["oldest_due_age_s"]
            )
    return [{"kind": name, "paused": name in paused, **kinds[name]} for name in sorted(kinds)]


def kinds_table(kinds: list[dict[str, Any]]) -> Any:
    return display.table(
        "Emails by kind and state",
        ["kind", *STATES, "oldest due"],
        [
            [
                k["kind"] + (" (paused)" if k["paused"] else ""),
                *(k["counts"][s] for s in STATES),
                display.age(k["oldest_due_age_s"]),
            ]
            for k in kinds
        ],
    )


def workers_table(workers: list[dict[str, Any]]) -> Any:
    rows = [
        [
            str(w["id"])[:8],
            w["hostname"],
            w["pid"],
            w["kinds"],
            w["concurrency"],
            w["in_flight"],
            display.age(w["heartbeat_age_s"]) + " ago",
        ]
        for w in workers
    ]
    columns = ["worker", "host", "pid", "kinds", "concurrency", "in flight", "heartbeat"]
    return display.table(f"Live workers: {len(workers)}", columns, rows)


def open_campaigns(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of campaign_progress_open, one entry per campaign (newest first) with its counts
    by state."""
    campaigns: dict[int, dict[str, Any]] = {}
    for row in rows:
        entry = campaigns.setdefault(
            row["campaign_id"],
            {
                "id": row["campaign_id"],
                "name": row["name"],
                "kind": row["kind"],
                "status": row["campaign_status"],
                "send_at": row["send_at"],
                "counts": dict.fromkeys(STATES, 0),
            },
        )
        entry["counts"][row["state"]] = int(row["count"])
    return sorted(campaigns.values(), key=lambda c: -c["id"])


def campaigns_table(campaigns: list[dict[str, Any]]) -> Any:
    shown = ("waiting", *(s for s in STATES if s not in WAITING_STATES))
    rows = []
    for c in campaigns:
        counts = c["counts"]
        waiting = sum(counts[s] for s in WAITING_STATES)
        rows.append(
            [c["id"], c["name"], c["kind"], c["status"], c["send_at"], waiting]
            + [counts[s] for s in shown[1:]]
        )
    title = f"Campaigns in progress: {len(campaigns)}"
    if len(campaigns) == CAMPAIGNS_SHOWN:
        title += " (the newest)"
    return display.table(title, ["id", "name", "kind", "status", "send at", *shown], rows)


# -- pending and failed --------------------------------------------------------------------


async def cmd_pending(args: argparse.Namespace) -> int:
    async with connect(args) as pool:
        kind = await listed_kind(pool, args)
        rows = await email_list_pending(pool, kind, args.limit)
        counts = await email_count_by_state(pool)
    total = sum(
        r["count"] for r in counts if r["state"] in WAITING_STATES and kind in (None, r["kind"])
    )
    if args.json:
        display.print_json({"total": total, "emails": rows})
        return 0
    out = display.console()
    out.print(
        display.table(
            f"Waiting emails: {total}"
            + (f" (showing the {len(rows)} due first)" if rows and total > len(rows) else ""),
            ["id", "kind", "state", "to", "priority", "due", "overdue", "attempts", "last error"],
            [
                [
                    r["id"],
                    r["kind"],
                    r["state"],
                    r["to_address"],
                    r["priority"],
                    r["due_at"],
                    display.age(r["overdue_s"]) if r["overdue_s"] > 0 else "-",
                    f"{r['attempts']}/{r['max_attempts']}",
                    display.truncate(r["last_error"]),
                ]
                for r in rows
            ],
        )
    )
    return 0


async def cmd_failed(args: argparse.Namespace) -> int:
    since = moment(args.since) if args.since else None
    async with connect(args) as pool:
        kind = await listed_kind(pool, args)
        rows = await email_list_failed(pool, kind, since, args.limit)
    if args.json:
        display.print_json({"emails": rows})
        return 0
    display.console().print(
        display.table(
            f"Failed emails (newest first, at most {args.limit})",
            ["id", "kind", "to", "attempts", "failed at", "smtp", "last error"],
            [
                [
                    r["id"],
                    r["kind"],
                    r["to_address"],
                    r["attempts"],
                    r["failed_at"],
                    r["last_smtp_code"],
                    display.truncate(r["last_error"] or r["last_smtp_reply"], 80),
                ]
                for r in rows
            ],
        )
    )
    return 0


# -- retry and cancel ----------------------------------------------------------------------


async def cmd_retry(args: argparse.Namespace) -> int:
    selectors = args.kind or args.failed_since or args.all_failed
    if args.ids and selectors:
        raise UsageError("retry: give email ids, or --kind/--failed-since/--all-failed, not both")
    if not args.ids and not selectors:
        raise UsageError("retry: give email ids, or --kind KIND, --failed-since TIME, --all-failed")
    ids = email_ids(args.ids)
    kind = admin.check_kind(args.kind) if args.kind else None
    since = moment(args.failed_since) if args.failed_since else None
    async with connect(args) as pool:
        if ids:
            retried = await admin.retry_emails(pool, ids)
            count = len(retried)
        else:
            with display.progress("retrying failed emails") as tracker:
                count = await admin.retry_failed(
                    pool, kind=kind, since=since, on_batch=tracker.advance
                )
            retried = None
    if args.json:
        display.print_json(
            {"retried": count, "ids": retried} if retried is not None else {"retried": count}
        )
    else:
        listed = f": {', '.join(map(str, retried))}" if retried else ""
        if count:
            print(f"retried {count} email{'s' if count != 1 else ''}, due now{listed}")
        else:
            print("no failed email matched; nothing retried")
    return 0


async def cmd_cancel(args: argparse.Namespace) -> int:
    ids = email_ids(args.ids)
    async with connect(args) as pool:
        cancelled = await admin.cancel_emails(pool, ids)
    if args.json:
        display.print_json({"cancelled": len(cancelled), "ids": cancelled})
    else:
        print(
            f"cancelled {len(cancelled)} email{'s' if len(cancelled) != 1 else ''}: "
            f"{', '.join(map(str, cancelled))}"
        )
    return 0


# -- pause and resume ----------------------------------------------------------------------


async def cmd_pause(args: argparse.Namespace) -> int:
    async with connect(args) as pool:
        await paused_kind(pool, args.kind)
        changed = await admin.pause_kind(pool, args.kind, paused_by="mailq pause (CLI)")
    if args.json:
        display.print_json({"kind": args.kind, "paused": True, "changed": changed})
    elif changed:
        print(f"paused {args.kind}: no worker claims it until `mailq resume {args.kind}`")
    else:
        print(f"{args.kind} was already paused")
    return 0


async def cmd_resume(args: argparse.Namespace) -> int:
    async with connect(args) as pool:
        await paused_kind(pool, args.kind)
        changed = await admin.resume_kind(pool, args.kind)
    if args.json:
        display.print_json({"kind": args.kind, "paused": False, "changed": changed})
    elif changed:
        print(f"resumed {args.kind}: workers claim it again")
    else:
        print(f"{args.kind} was not paused")
    return 0


# -- prune ---------------------------------------------------------------------------------


async def cmd_prune(args: argparse.Namespace) -> int:
    days = args.older_than if args.older_than is not None else settings_for(args).retention_days
    if days < 0:
        raise UsageError("--older-than: the number of days cannot be negative")
    older_than = timedelta(days=days)
    async with connect(args) as pool:
        total = await email_count_finished_before(pool, datetime.now(UTC) - older_than)
        with display.progress("pruning finished emails", total) as tracker:
            pruned = await admin.prune(pool, older_than, on_batch=tracker.advance)
    if pruned is None:
        print("mailq: another process is pruning right now; try again later", file=sys.stderr)
        return 1
    if args.json:
        display.print_json({"pruned": pruned, "older_than_days": days})
    else:
        print(f"pruned {pruned} emails that finished over {days:g} days ago")
    return 0


# -- the parser ----------------------------------------------------------------------------


def add_commands(commands: Any) -> None:
    """Add the monitor's subcommands to `mailq`'s parser."""

    def command(name: str, handler: Any, help: str) -> argparse.ArgumentParser:
        return add_command(commands, name, handler, help)

    command("status", cmd_status, "emails per kind and state, live workers, paused kinds")

    pending = command("pending", cmd_pending, "waiting emails, the longest overdue first")
    pending.add_argument("--kind", help="only this kind")
    pending.add_argument(
        "--limit", type=list_limit, default=LIST_LIMIT, help="at most this many (50)"
    )

    failed = command("failed", cmd_failed, "failed emails with their last error, newest first")
    failed.add_argument("--kind", help="only this kind")
    failed.add_argument(
        "--since", metavar="TIME", help="failed at or after TIME (2h, 2025-05-01, …)"
    )
    failed.add_argument(
        "--limit", type=list_limit, default=LIST_LIMIT, help="at most this many (50)"
    )

    retry = command("retry", cmd_retry, "make failed, cancelled or unknown emails due again")
    retry.add_argument("ids", nargs="*", metavar="ID", help="email ids")
    retry.add_argument("--kind", help="every failed email of this kind")
    retry.add_argument("--failed-since", metavar="TIME", help="every email failed since TIME")
    retry.add_argument("--all-failed", action="store_true", help="every failed email")

    cancel = command("cancel", cmd_cancel, "cancel waiting (or unknown) emails")
    cancel.add_argument("ids", nargs="+", metavar="ID", help="email ids")

    pause = command("pause", cmd_pause, "stop every worker from claiming a kind")
    pause.add_argument("kind", metavar="KIND")
    resume = command("resume", cmd_resume, "let workers claim a paused kind again")
    resume.add_argument("kind", metavar="KIND")

    prune = command("prune", cmd_prune, "delete finished emails past the retention, in batches")
    prune.add_argument(
        "--older-than",
        type=days,
        metavar="DAYS",
        help="finished more than DAYS ago (default: MAILQ_RETENTION_DAYS, 14)",
    )
