"""Failures grouped by reply code and by recipient domain over 1 h, 24 h or 7 d, each group
with "retry group" and "suppress group" (GoodJob's Cleaner is the model).

The groups count the latest GROUP_LIMIT emails that failed in the window (emails_failed_idx,
newest first, each with its last attempt by primary key); the page says when the window held
more.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from starlette.responses import Response

from mailq import admin
from mailq.db.audit_log import audit_log_of_type
from mailq.db.dashboard import (
    dashboard_email_lock,
    dashboard_failure_group_emails,
    dashboard_failure_groups,
    dashboard_now,
)
from mailq.errors import UsageError
from mailq.service.dashboard.guard import Context, Form, action, done, page
from mailq.suppression import suppress

WINDOWS = {"1h": timedelta(hours=1), "24h": timedelta(hours=24), "7d": timedelta(days=7)}
GROUP_LIMIT = 20_000
SUPPRESS_REASON = "suppressed from the dashboard's failures ({group})"


def _groups(rows: Sequence[dict[str, Any]], by: str) -> list[dict[str, Any]]:
    groups: dict[Any, dict[str, Any]] = {}
    for row in rows:
        key = row["smtp_code"] if by == "code" else row["domain"]
        entry = groups.setdefault(
            key, {"key": key, "n": 0, "latest": row["latest"], "reply": None, "parts": {}}
        )
        entry["n"] += row["n"]
        entry["latest"] = max(entry["latest"], row["latest"])
        sample = row["reply"] or row["error"]
        if entry["reply"] is None and sample:
            entry["reply"] = sample
        other = row["domain"] if by == "code" else row["smtp_code"]
        entry["parts"][other] = entry["parts"].get(other, 0) + row["n"]
    out = sorted(groups.values(), key=lambda g: (-g["n"], str(g["key"])))
    for entry in out:
        top = sorted(entry["parts"].items(), key=lambda p: -p[1])[:3]
        entry["top"] = top
    return out


def _window(raw: str) -> str:
    return raw if raw in WINDOWS else "24h"


@page
async def failures(ctx: Context) -> Response:
    window = _window(ctx.request.query_params.get("window", ""))
    now = await dashboard_now(ctx.pool)
    rows = await dashboard_failure_groups(ctx.pool, now - WINDOWS[window], GROUP_LIMIT)
    total = sum(r["n"] for r in rows)
    return ctx.page(
        "failures.html",
        "failures",
        window=window,
        windows=tuple(WINDOWS),
        by_code=_groups(rows, "code"),
        by_domain=_groups(rows, "domain"),
        total=total,
        capped=total >= GROUP_LIMIT,
        limit=GROUP_LIMIT,
        audit=await audit_log_of_type(ctx.pool, ["failures"]),
    )


@action
async def group_action(ctx: Context, form: Form) -> Response:
    window = _window(form.get("window"))
    verb = form.get("action")
    by = form.get("by")
    key = form.get("key")
    if verb not in ("retry", "suppress") or by not in ("code", "domain"):
        raise UsageError("action: retry or suppress a group by code or by domain")
    code = None
    without_code = False
    domain = None
    if by == "code":
        if key in ("", "none"):
            without_code = True
        elif key.isdigit() and len(key) <= 3:
            code = int(key)
        else:
            raise UsageError("code: a reply code like 550")
        label = f"code {key or 'none'}"
    else:
        domain = key.lower()
        label = f"domain {domain}"
    back = "/dashboard/failures?" + urlencode({"window": window})
    async with ctx.pool.acquire() as conn, conn.transaction():
        now = await dashboard_now(conn)
        rows = await dashboard_failure_group_emails(
            conn, now - WINDOWS[window], GROUP_LIMIT, code=code, without_code=without_code,
            domain=domain,
        )  # fmt: skip
        if verb == "retry":
            locked = await dashboard_email_lock(conn, [r["id"] for r in rows], ["failed"])
            changed = await admin.retry_emails(conn, locked)
            await ctx.record(
                conn, "failures.retry", "failures", label, email_ids=changed,
                detail={"window": window, "count": len(changed)},
            )  # fmt: skip
            return done(ctx, back, f"Queued again: {len(changed)} emails of {label}.")
        addresses = sorted({r["to_address"] for r in rows})
        result = await suppress(conn, addresses, SUPPRESS_REASON.format(group=label))
        await ctx.record(
            conn, "failures.suppress", "failures", label,
            detail={"window": window, "addresses": len(addresses), "added": result.added},
        )  # fmt: skip
    return done(
        ctx, back, f"Suppressed {result.added} new addresses of {label} ({len(addresses)} in all)."
    )
