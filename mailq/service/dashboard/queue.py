"""Kinds (pause and resume, rate limits and how full their buckets are) and workers
(heartbeat age, emails in flight, kinds)."""

from __future__ import annotations

from starlette.responses import Response

from mailq import admin
from mailq.db.audit_log import audit_log_of_type
from mailq.db.dashboard import dashboard_rate_buckets
from mailq.db.emails import email_count_by_state
from mailq.db.leases import worker_lease_list
from mailq.db.paused_kinds import kind_list_paused
from mailq.errors import UsageError
from mailq.kinds import KIND_NAME, policy_for
from mailq.service.dashboard.guard import Context, Form, action, done, page
from mailq.service.dashboard.overview import count_table
from mailq.worker.ratelimit import BACKEND, bucket_name

PAUSED_BY = "the dashboard"


@page
async def kinds(ctx: Context) -> Response:
    configured = ctx.service.config.kinds
    counts = {k.kind: k for k in count_table(await email_count_by_state(ctx.pool))}
    paused = {r["kind"]: r for r in await kind_list_paused(ctx.pool)}
    buckets = {r["name"]: r for r in await dashboard_rate_buckets(ctx.pool)}
    names = sorted(set(configured) | set(counts) | set(paused))
    rows = []
    for name in names:
        policy = configured.get(name) or policy_for(name, configured)
        found = counts.get(name)
        rows.append(
            {
                "name": name,
                "configured": name in configured,
                "policy": policy,
                "paused": paused.get(name),
                "waiting": 0
                if found is None
                else sum(found.counts.get(s, 0) for s in ("scheduled", "queued", "retrying")),
                "sending": 0 if found is None else found.counts.get("sending", 0),
                "oldest_due_s": None if found is None else found.oldest_due_s,
                "bucket": buckets.get(bucket_name(name)),
            }
        )
    return ctx.page(
        "kinds.html",
        "kinds",
        rows=rows,
        backend=buckets.get(BACKEND),
        backend_limit=ctx.service.config.backend_rate_limit,
        audit=await audit_log_of_type(ctx.pool, ["kind"]),
    )


@action
async def kind_action(ctx: Context, form: Form) -> Response:
    kind = str(ctx.request.path_params.get("kind", ""))
    verb = ctx.request.path_params.get("verb")
    if not KIND_NAME.match(kind) or verb not in ("pause", "resume"):
        raise UsageError("pause or resume a kind by its name")
    async with ctx.pool.acquire() as conn, conn.transaction():
        if verb == "pause":
            changed = await admin.pause_kind(conn, kind, PAUSED_BY)
        else:
            changed = await admin.resume_kind(conn, kind)
        await ctx.record(conn, f"kind.{verb}", "kind", kind, detail={"changed": changed})
    state = "paused" if verb == "pause" else "running"
    text = f"Kind {kind} is {state}" + ("." if changed else f" (it already was {state}).")
    return done(ctx, form.get("back") or "/dashboard/kinds", text)


@page
async def workers(ctx: Context) -> Response:
    rows = await worker_lease_list(ctx.pool)
    return ctx.page("workers.html", "workers", rows=rows, lease_s=ctx.service.settings.lease_s)
