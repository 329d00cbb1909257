"""The `hold` triage: emails whose worker died after SMTP DATA had begun, so nobody knows
whether they went out. An operator marks them sent (they did) or resends them (same
Message-ID, so receivers can deduplicate), one by one or in bulk (emails_unknown_idx)."""

from __future__ import annotations

from starlette.responses import Response

from mailq import admin
from mailq.db.audit_log import audit_log_of_type
from mailq.db.dashboard import dashboard_email_lock, dashboard_unknown_list
from mailq.errors import UsageError
from mailq.service.dashboard.guard import Context, Form, action, done, page

PAGE_SIZE = 100
BULK_MAX = 100_000
BACK = "/dashboard/unknown"


@page
async def unknown(ctx: Context) -> Response:
    after = ctx.request.query_params.get("after", "")
    after_id = int(after) if after.isdigit() and len(after) <= 19 else 0
    rows = await dashboard_unknown_list(ctx.pool, after_id, PAGE_SIZE)
    return ctx.page(
        "unknown.html",
        "unknown",
        rows=rows,
        next_after=rows[-1]["id"] if len(rows) == PAGE_SIZE else None,
        audit=await audit_log_of_type(ctx.pool, ["emails"]),
    )


@action
async def bulk(ctx: Context, form: Form) -> Response:
    verb = form.get("action")
    if verb not in ("mark-sent", "resend"):
        raise UsageError("action: mark-sent or resend")
    async with ctx.pool.acquire() as conn, conn.transaction():
        if form.get("scope") == "all":
            rows = await dashboard_unknown_list(conn, 0, BULK_MAX)
            chosen = [r["id"] for r in rows]
        else:
            chosen = [int(v) for v in form.all("id") if v.isdigit() and len(v) <= 19]
        if not chosen:
            raise UsageError("tick at least one email first")
        locked = await dashboard_email_lock(conn, chosen, ["unknown"])
        if verb == "mark-sent":
            changed = await admin.mark_sent(conn, locked)
        else:
            changed = await admin.retry_emails(conn, locked)
        await ctx.record(
            conn, f"unknown.{verb.replace('-', '_')}", "emails", "unknown", email_ids=changed,
            detail={"count": len(changed)},
        )  # fmt: skip
    past = "Marked sent" if verb == "mark-sent" else "Queued again"
    return done(ctx, BACK, f"{past}: {len(changed)} unknown emails.")
