"""Emails: search, bulk retry and cancel, one email's page, its sandboxed HTML preview.

A search walks the primary key down from the newest email (or from the end of the time
range asked for: a time range becomes a range of ids by bisection), WALK_IDS ids per page,
and says which ids it searched; the next page goes on below. No index on mailq.emails is
there for the dashboard: every one would cost each enqueue and claim. Bulk actions on
"everything matching" read only the emails such an action can change (waiting and unknown
for a cancel, failed and unknown for a retry: their partial indexes), BULK_MAX at a time.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from email.parser import BytesHeaderParser
from email.policy import default as default_policy
from typing import Any
from urllib.parse import urlencode

import orjson
from starlette.responses import Response

from mailq import admin
from mailq.compose.message import build_message
from mailq.db.audit_log import audit_log_for_email
from mailq.db.dashboard import (
    EmailFilter,
    dashboard_email_cancellable,
    dashboard_email_detail,
    dashboard_email_id_at,
    dashboard_email_lock,
    dashboard_email_max_id,
    dashboard_email_retryable,
    dashboard_email_walk,
)
from mailq.db.emails import email_attempts
from mailq.errors import MailqError, UsageError
from mailq.kinds import KIND_NAME
from mailq.models import ClaimedEmail, EmailState
from mailq.service.dashboard.guard import Context, Form, action, done, not_found, page
from mailq.service.state import MAX_ID

PAGE_SIZE = 50
WALK_IDS = 20_000
BULK_MAX = 100_000
STATES = tuple(s.value for s in EmailState)
STORED = {"scheduled": "waiting", "queued": "waiting", "retrying": "waiting"}
FILTER_FIELDS = ("q", "kind", "state", "campaign", "meta", "from", "to")
# The email's own HTML: no script, nothing remote, unless `images=1` lets remote images in.
PREVIEW_POLICY = (
    "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:{images}; "
    "font-src data:; frame-ancestors 'self'; form-action 'none'; base-uri 'none'"
)


# -- the filter -----------------------------------------------------------------------------


def _moment(name: str, raw: str) -> datetime | None:
    if not raw:
        return None
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise UsageError(f"{name}: not a time like 2025-01-31T14:00") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def parse_filter(values: Any) -> tuple[EmailFilter, int | None, dict[str, str]]:
    """The filter of a query string or form; also an id when `q` is one, and the fields as
    given (to put back into the form)."""
    given = {name: str(values.get(name, "") or "").strip()[:320] for name in FILTER_FIELDS}
    q = given["q"]
    email_id = address = domain = None
    if q.isascii() and q.isdigit() and len(q) <= 19 and 1 <= int(q) <= MAX_ID:
        email_id = int(q)
    elif q.startswith("@") and len(q) > 1:
        domain = q[1:].lower()
    elif q:
        address = q.lower()
    kind = given["kind"] or None
    if kind is not None and not KIND_NAME.match(kind):
        raise UsageError(f"kind: {kind[:64]!r} is not a kind name")
    state = given["state"] or None
    if state is not None and state not in STATES:
        raise UsageError(f"state: one of {', '.join(STATES)}")
    campaign = None
    if given["campaign"]:
        if not given["campaign"].isdigit() or len(given["campaign"]) > 19:
            raise UsageError("campaign: a campaign id")
        campaign = int(given["campaign"])
    metadata = None
    if given["meta"]:
        key, equals, value = given["meta"].partition("=")
        if not equals or not key.strip():
            raise UsageError("metadata: KEY=VALUE")
        metadata = orjson.dumps({key.strip(): value.strip()}).decode()
    where = EmailFilter(
        kind=kind,
        state=state,
        address=address,
        domain=domain,
        campaign_id=campaign,
        metadata=metadata,
        created_from=_moment("from", given["from"]),
        created_to=_moment("to", given["to"]),
    )
    return where, email_id, given


# -- pages ----------------------------------------------------------------------------------


@page
async def emails(ctx: Context) -> Response:
    try:
        where, email_id, given = parse_filter(ctx.request.query_params)
    except MailqError as bad:
        return ctx.page("emails.html", "emails", status=400, error=str(bad), **_empty())
    if email_id is not None:
        row = await dashboard_email_detail(ctx.pool, email_id)
        rows = [row] if row is not None else []
        return ctx.page("emails.html", "emails", error=None, rows=rows, given=given,
                        searched=None, next_query=None, states=STATES, filter_query="")  # fmt: skip
    top = await dashboard_email_max_id(ctx.pool)
    upper = top + 1
    lower = 1
    if where.created_to is not None:
        upper = await dashboard_email_id_at(ctx.pool, where.created_to, top)
    if where.created_from is not None:
        lower = await dashboard_email_id_at(ctx.pool, where.created_from, top)
    before = ctx.request.query_params.get("before", "")
    if before.isdigit() and len(before) <= 19:
        upper = min(upper, int(before))
    down_to = max(lower, upper - WALK_IDS)
    statuses = None
    if where.state is not None:
        statuses = [STORED.get(where.state, where.state)]
    rows = []
    if upper > lower:
        rows = await dashboard_email_walk(ctx.pool, where, upper, down_to, PAGE_SIZE, statuses)
    searched: tuple[int, int] | None
    if len(rows) == PAGE_SIZE:
        next_before: int | None = rows[-1]["id"]
        searched = (rows[-1]["id"], upper - 1)
    else:
        next_before = down_to if down_to > lower else None
        searched = (down_to, upper - 1) if upper > lower else None
    filter_query = urlencode({k: v for k, v in given.items() if v})
    next_query = None
    if next_before is not None:
        next_query = urlencode({**{k: v for k, v in given.items() if v}, "before": next_before})
    return ctx.page(
        "emails.html",
        "emails",
        error=None,
        rows=rows,
        given=given,
        searched=searched,
        next_query=next_query,
        states=STATES,
        filter_query=filter_query,
    )


def _empty() -> dict[str, Any]:
    return {
        "rows": [],
        "given": dict.fromkeys(FILTER_FIELDS, ""),
        "searched": None,
        "next_query": None,
        "states": STATES,
        "filter_query": "",
    }


def _email_id(ctx: Context) -> int | None:
    raw = ctx.request.path_params.get("id")
    return raw if isinstance(raw, int) and 1 <= raw <= MAX_ID else None


def preview_parts(row: dict[str, Any]) -> tuple[Any, list[tuple[str, str]], str | None]:
    """The message as a worker would build it now: its parts, its headers, or the reason it
    cannot be built."""
    content = json.loads(row["content"])
    claimed = ClaimedEmail(
        id=row["id"],
        kind=row["kind"],
        priority=row["priority"],
        attempt=max(1, row["attempts"]),
        max_attempts=row["max_attempts"],
        to=row["to_address"],
        message_id=row["message_id"],
        content=content,
        claimed_at=datetime.now(UTC),
        campaign_id=row["campaign_id"],
    )
    try:
        message = build_message(claimed)
    except MailqError as failed:
        return None, [], str(failed)
    parsed = BytesHeaderParser(policy=default_policy).parsebytes(message.data)
    headers = [(name, str(value)) for name, value in parsed.items()]
    return message.parts, headers, None


@page
async def email(ctx: Context) -> Response:
    email_id = _email_id(ctx)
    row = None if email_id is None else await dashboard_email_detail(ctx.pool, email_id)
    if row is None or email_id is None:
        return not_found(ctx, f"No email has id {ctx.request.path_params.get('id')}.")
    parts, headers, problem = preview_parts(row)
    return ctx.page(
        "email.html",
        "emails",
        email=row,
        metadata=json.loads(row["metadata"]),
        attempts=await email_attempts(ctx.pool, email_id),
        audit=await audit_log_for_email(ctx.pool, email_id),
        parts=parts,
        headers=headers,
        problem=problem,
        retryable=row["state"] in admin.RETRYABLE,
        cancellable=row["state"] in admin.CANCELLABLE,
        images=ctx.request.query_params.get("images") == "1",
    )


@page
async def preview(ctx: Context) -> Response:
    """The email's HTML alone, for the page's <iframe sandbox>: served with a policy that
    runs none of its script and loads nothing remote (remote images only with images=1)."""
    email_id = _email_id(ctx)
    row = None if email_id is None else await dashboard_email_detail(ctx.pool, email_id)
    if row is None:
        return Response("no such email", status_code=404, media_type="text/plain")
    parts, _headers, problem = preview_parts(row)
    body = problem or (parts.html if parts is not None and parts.html else "")
    images = " https: http:" if ctx.request.query_params.get("images") == "1" else ""
    return Response(
        body,
        media_type="text/html" if problem is None else "text/plain",
        headers={
            "Content-Security-Policy": PREVIEW_POLICY.format(images=images),
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-store",
            "Referrer-Policy": "no-referrer",
            "Cross-Origin-Resource-Policy": "same-origin",
        },
    )


# -- changes --------------------------------------------------------------------------------


@action
async def email_action(ctx: Context, form: Form) -> Response:
    email_id = _email_id(ctx)
    verb = ctx.request.path_params.get("verb")
    if email_id is None:
        return not_found(ctx, "No such email.")
    operations = {
        "retry": (admin.retry_emails, "email.retry", "Queued email {id} again."),
        "cancel": (admin.cancel_emails, "email.cancel", "Cancelled email {id}."),
        "mark-sent": (admin.mark_sent, "email.mark_sent", "Marked email {id} sent."),
    }
    if verb not in operations:
        return not_found(ctx, "No such action.")
    change, name, message = operations[verb]
    async with ctx.pool.acquire() as conn, conn.transaction():
        await change(conn, [email_id])
        await ctx.record(conn, name, "email", str(email_id))
    return done(
        ctx, form.get("back") or f"/dashboard/emails/{email_id}", message.format(id=email_id)
    )


@action
async def bulk(ctx: Context, form: Form) -> Response:
    """Retry or cancel the emails ticked on the page, or every one matching the filter (after
    a confirmation that says how many)."""
    verb = form.get("action")
    if verb not in ("retry", "cancel"):
        raise UsageError("action: retry or cancel")
    back = "/dashboard/emails?" + urlencode({k: form.get(k) for k in FILTER_FIELDS if form.get(k)})
    if form.get("scope") != "matching":
        ids = [int(v) for v in form.all("id") if v.isdigit() and len(v) <= 19]
        if not ids:
            raise UsageError("tick at least one email first")
        change = admin.retry_emails if verb == "retry" else admin.cancel_emails
        async with ctx.pool.acquire() as conn, conn.transaction():
            changed = await change(conn, ids)
            await ctx.record(
                conn, f"emails.{verb}", "emails", "selection", email_ids=changed,
                detail={"count": len(changed)},
            )  # fmt: skip
        past = "Queued again" if verb == "retry" else "Cancelled"
        return done(ctx, back, f"{past}: {len(changed)} emails.")
    where, _email_id_given, given = parse_filter(form)
    find = dashboard_email_retryable if verb == "retry" else dashboard_email_cancellable
    if form.get("confirm") != "yes":
        count = len(await find(ctx.pool, where, BULK_MAX))
        return ctx.page(
            "confirm.html", "emails", verb=verb, count=count, capped=count >= BULK_MAX,
            given=given, back=back,
        )  # fmt: skip
    statuses = ["failed", "unknown"] if verb == "retry" else ["waiting", "unknown"]
    change = admin.retry_emails if verb == "retry" else admin.cancel_emails
    async with ctx.pool.acquire() as conn, conn.transaction():
        ids = await find(conn, where, BULK_MAX)
        locked = await dashboard_email_lock(conn, ids, statuses)
        changed = await change(conn, locked)
        await ctx.record(
            conn, f"emails.{verb}", "emails", "filter", email_ids=changed,
            detail={"count": len(changed), "filter": {k: v for k, v in given.items() if v}},
        )  # fmt: skip
    past = "Queued again" if verb == "retry" else "Cancelled"
    skipped = len(ids) - len(locked)
    extra = f" ({skipped} were being sent and were left alone)" if skipped else ""
    return done(ctx, back, f"{past}: {len(changed)} emails matching the filter{extra}.")
