"""mailq.queue_stats reads counts the triggers keep (emails and retrying emails per kind,
waiting emails due later by minute) and no backlog: through every change an email goes
through, the view equals the public states computed row by row (mailq.email_state), and the
claim of a due email writes none of the counts."""

from __future__ import annotations

import json
import uuid
from typing import Any

import asyncpg

CONTENT = json.dumps({"from": "a@example.com", "subject": "s", "text": "t"})
NAIVE = """
    SELECT kind, mailq.email_state(status, run_at, attempts) AS state, count(*) AS count
    FROM mailq.emails GROUP BY 1, 2
"""
# The longest-due waiting email of each kind, or the oldest claim (as queue_stats has it).
OLDEST = """
    SELECT kind, max(now() - run_at) AS age FROM mailq.emails
    WHERE status = 'sending' OR status = 'waiting' AND run_at <= now() GROUP BY 1
"""


async def _same(conn: asyncpg.Connection) -> dict[tuple[str, str], int]:
    async with conn.transaction():  # one now() for the view and the row-by-row count
        rows = await conn.fetch("SELECT kind, state, count, oldest_due_age FROM mailq.queue_stats")
        naive_rows = await conn.fetch(NAIVE)
        oldest = {r["kind"]: r["age"] for r in await conn.fetch(OLDEST)}
    view = {(r["kind"], r["state"]): r["count"] for r in rows}
    naive = {(r["kind"], r["state"]): r["count"] for r in naive_rows}
    assert view == naive
    by_kind: dict[str, Any] = {}
    for r in rows:
        if r["oldest_due_age"] is not None:
            by_kind[r["kind"]] = max(
                r["oldest_due_age"], by_kind.get(r["kind"], r["oldest_due_age"])
            )
    assert by_kind == oldest
    return view


async def _counts(conn: asyncpg.Connection) -> list[tuple[Any, ...]]:
    kinds = await conn.fetch("SELECT * FROM mailq.kind_counts ORDER BY 1, 2")
    later = await conn.fetch("SELECT * FROM mailq.waiting_later_counts ORDER BY 1, 2, 3")
    return [tuple(r) for r in kinds] + [tuple(r) for r in later]


async def test_queue_stats_follows_every_change_of_state(conn: asyncpg.Connection) -> None:
    worker = uuid.uuid4()
    await conn.execute(
        """
        INSERT INTO mailq.emails (kind, to_address, message_id, content, run_at, attempts)
        SELECT (ARRAY['welcome', 'digest'])[1 + g % 2], 'u' || g || '@x.org', '<' || g || '@x>',
               $1, now() + (g % 3 - 1) * interval '1 hour', CASE WHEN g % 4 = 0 THEN 1 ELSE 0 END
        FROM generate_series(1, 40) AS g
        """,
        CONTENT,
    )
    # Due later within this minute and the next (counted from the index or by minute).
    await conn.execute(
        """
        INSERT INTO mailq.emails (kind, to_address, message_id, content, run_at, attempts)
        SELECT 'digest', 's' || g || '@x.org', '<s' || g || '@x>', $1,
               now() + g * interval '7 seconds', g % 2
        FROM generate_series(1, 12) AS g
        """,
        CONTENT,
    )
    view = await _same(conn)
    assert view[("welcome", "retrying")] == 10 and view[("digest", "scheduled")] > 0
    # Claimed: fresh due emails only, then retrying ones too.
    claim = """
        UPDATE mailq.emails SET status = 'sending', worker_id = $1, claimed_at = now(),
               attempts = attempts + 1
        WHERE id IN (SELECT id FROM mailq.emails WHERE status = 'waiting' AND run_at <= now()
                     AND attempts >= $2 ORDER BY id LIMIT 8)
    """
    before = await _counts(conn)
    await conn.execute(claim.replace(">= $2", "= $2"), worker, 0)
    assert await _counts(conn) == before, "the claim of due emails wrote counts"
    await _same(conn)
    await conn.execute(claim, worker, 1)
    await _same(conn)
    # A transient failure leaves them waiting again, due later: retrying.
    await conn.execute(
        """
        UPDATE mailq.emails SET status = 'waiting', worker_id = NULL, claimed_at = NULL,
               run_at = now() + interval '5 minutes'
        WHERE status = 'sending' AND id % 2 = 0
        """
    )
    await _same(conn)
    # The others are sent; a retrying one is cancelled, another one is due at once.
    await conn.execute(
        "UPDATE mailq.emails SET status = 'sent', worker_id = NULL, claimed_at = NULL, "
        "finished_at = now() WHERE status = 'sending'"
    )
    await conn.execute(
        "UPDATE mailq.emails SET status = 'cancelled', finished_at = now() WHERE id = "
        "(SELECT min(id) FROM mailq.emails WHERE status = 'waiting' AND attempts > 0)"
    )
    await conn.execute(
        "UPDATE mailq.emails SET run_at = now() - interval '1 minute' WHERE id = "
        "(SELECT max(id) FROM mailq.emails WHERE status = 'waiting' AND attempts > 0)"
    )
    await _same(conn)
    # An operator's retry of a finished email, and deleting emails (pruning, or by hand).
    await conn.execute(
        "UPDATE mailq.emails SET status = 'waiting', finished_at = NULL WHERE status = 'sent'"
    )
    await _same(conn)
    await conn.execute("DELETE FROM mailq.emails WHERE id % 3 = 0")
    view = await _same(conn)
    assert ("welcome", "retrying") in view and ("digest", "scheduled") in view
