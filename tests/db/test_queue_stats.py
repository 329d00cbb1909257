"""mailq.queue_stats counts the waiting emails from emails_due_idx and the retrying ones from
mailq.retrying_emails, which the count triggers keep: through every change an email goes
through, the view equals the public state computed row by row (mailq.email_state)."""

from __future__ import annotations

import json
import uuid

import asyncpg

CONTENT = json.dumps({"from": "a@example.com", "subject": "s", "text": "t"})
NAIVE = """
    SELECT kind, mailq.email_state(status, run_at, attempts) AS state, count(*) AS count
    FROM mailq.emails GROUP BY 1, 2
"""


async def _same(conn: asyncpg.Connection) -> dict[tuple[str, str], int]:
    view = {(r["kind"], r["state"]): r["count"] for r in await conn.fetch(
        "SELECT kind, state, count FROM mailq.queue_stats")}  # fmt: skip
    naive = {(r["kind"], r["state"]): r["count"] for r in await conn.fetch(NAIVE)}
    assert view == naive
    kept = await conn.fetch("SELECT email_id, kind, run_at FROM mailq.retrying_emails")
    expected = await conn.fetch(
        "SELECT id, kind, run_at FROM mailq.emails WHERE status = 'waiting' AND attempts > 0"
    )
    assert sorted(map(tuple, kept)) == sorted(map(tuple, expected))
    return view


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
    view = await _same(conn)
    assert view[("welcome", "retrying")] == 10 and view[("digest", "scheduled")] > 0
    # Claimed: a retrying email and a fresh one are sending.
    claim = """
        UPDATE mailq.emails SET status = 'sending', worker_id = $1, claimed_at = now(),
               attempts = attempts + 1
        WHERE id IN (SELECT id FROM mailq.emails WHERE status = 'waiting' AND run_at <= now()
                     ORDER BY id LIMIT 8)
    """
    await conn.execute(claim, worker)
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
    assert ("welcome", "retrying") in view and ("welcome", "sent") not in view
