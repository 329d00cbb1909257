"""The suppression list: find, browse (keyset by address), add, remove, import a CSV, through
mailq.suppression."""

from __future__ import annotations

import csv
import io

from starlette.responses import Response

from mailq.db.audit_log import audit_log_of_type
from mailq.errors import InvalidEmail
from mailq.service.dashboard.guard import Context, Form, action, done, page
from mailq.suppression import (
    find_suppressions,
    import_suppressions,
    list_suppressions,
    normalise,
    suppress,
    unsuppress,
)

PAGE_SIZE = 50
DEFAULT_REASON = "added from the dashboard"
IMPORT_REASON = "imported from the dashboard"
BACK = "/dashboard/suppressions"


@page
async def suppressions(ctx: Context) -> Response:
    q = ctx.request.query_params.get("q", "").strip()[:320]
    after = ctx.request.query_params.get("after", "").strip()[:320] or None
    if q and "@" in q and not q.startswith("@"):
        found = await find_suppressions(ctx.pool, [q])
        rows = list(found.values())
        next_after = None
    else:
        start = after or (q.lower() if q else None)
        rows = await list_suppressions(ctx.pool, after=start, limit=PAGE_SIZE)
        next_after = rows[-1].address if len(rows) == PAGE_SIZE else None
    return ctx.page(
        "suppressions.html",
        "suppressions",
        rows=rows,
        q=q,
        next_after=next_after,
        audit=await audit_log_of_type(ctx.pool, ["suppression"]),
    )


@action
async def add(ctx: Context, form: Form) -> Response:
    address = normalise(form.get("address"))
    reason = form.get("reason").strip() or DEFAULT_REASON
    async with ctx.pool.acquire() as conn, conn.transaction():
        result = await suppress(conn, [address], reason)
        await ctx.record(
            conn, "suppression.add", "suppression", address,
            detail={"reason": reason, "cancelled": result.cancelled},
        )  # fmt: skip
    if not result.added:
        return done(ctx, BACK, f"{address} was already suppressed.")
    return done(ctx, BACK, f"Suppressed {address}; {result.cancelled} emails to it were cancelled.")


@action
async def remove(ctx: Context, form: Form) -> Response:
    address = normalise(form.get("address"))
    async with ctx.pool.acquire() as conn, conn.transaction():
        removed = await unsuppress(conn, [address])
        await ctx.record(conn, "suppression.remove", "suppression", address)
    text = f"{address} may be sent to again." if removed else f"{address} was not suppressed."
    return done(ctx, form.get("back") or BACK, text)


def _entries(text: str) -> list[str | tuple[str, str]]:
    """address[,reason] rows; a header row naming an `address`/`email` column is skipped."""
    entries: list[str | tuple[str, str]] = []
    for number, row in enumerate(csv.reader(io.StringIO(text))):
        cells = [c.strip() for c in row]
        if not cells or not cells[0]:
            continue
        if number == 0 and cells[0].lower() in ("address", "email", "e-mail"):
            continue
        entries.append((cells[0], cells[1]) if len(cells) > 1 and cells[1] else cells[0])
    return entries


@action
async def import_csv(ctx: Context, form: Form) -> Response:
    entries = _entries(form.get("csv"))
    if not entries:
        raise InvalidEmail("csv: no addresses in it (one per line: address[,reason])")
    async with ctx.pool.acquire() as conn, conn.transaction():
        result = await import_suppressions(conn, entries, IMPORT_REASON)
        await ctx.record(
            conn, "suppression.import", "suppression", f"{len(entries)} rows",
            detail={"rows": len(entries), "added": result.added, "cancelled": result.cancelled},
        )  # fmt: skip
    return done(
        ctx,
        BACK,
        f"Imported {len(entries)} rows: {result.added} new addresses, "
        f"{result.cancelled} emails cancelled.",
    )
