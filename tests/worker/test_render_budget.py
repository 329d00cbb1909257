"""A template over its render budget (issue 11, case 1): rendered off the worker's event loop,
refused once (failed, one attempt), never taken back as lost, and the worker's heartbeat and
its other sends go on meanwhile."""

from __future__ import annotations

import itertools
import json
import time

import asyncpg
import pytest

from mailq import enqueue
from mailq.compose import sandbox
from mailq.delivery.backends import sender_from_url
from tests.support.emails import welcome
from tests.support.smtp import SmtpSink
from tests.support.waiting import eventually
from tests.worker.test_worker import running, worker_for

# 3e8 loop steps: minutes of CPU without a budget.
POISON = "{% for i in range(100000) %}{% for j in range(3000) %}{% endfor %}{% endfor %}done"
LEASE_S = 1.0


async def test_a_poison_template_fails_once_while_the_lease_and_a_neighbour_go_on(
    database_url: str,
    conn: asyncpg.Connection,
    smtp_sink: SmtpSink,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A budget of twice the lease, so that a render on the event loop would lose the lease.
    monkeypatch.setattr(sandbox, "MAX_CPU_S", 2 * LEASE_S)
    monkeypatch.setattr(sandbox, "MAX_STEPS", 10**9)
    (poison_id,) = await enqueue(conn, welcome(1, text="{% if true %}queued{% endif %}"))
    # An email queued before templates were checked at enqueue (the check refuses it now).
    await conn.execute(
        "UPDATE mailq.emails SET content = jsonb_set(content, '{text}', $2::jsonb) WHERE id = $1",
        poison_id,
        json.dumps(POISON),
    )
    worker = worker_for(database_url, sender_from_url(smtp_sink.url), lease_s=LEASE_S)
    heartbeats: list[float] = []
    async with running(worker):

        async def rendering() -> bool:
            return await conn.fetchval(
                "SELECT status = 'sending' FROM mailq.emails WHERE id = $1", poison_id
            )

        await eventually(rendering, timeout=10, message="the poison email was not claimed")
        queued_at = time.monotonic()
        (neighbour_id,) = await enqueue(conn, welcome(2))

        async def neighbour_sent() -> bool:
            return any(r.recipients == ["user2@example.com"] for r in smtp_sink.received)

        await eventually(neighbour_sent, timeout=10, message="the neighbour was not sent")
        neighbour_s = time.monotonic() - queued_at

        async def poison_done() -> bool:
            beat = await conn.fetchval("SELECT max(heartbeat_at) FROM mailq.worker_leases")
            heartbeats.append(beat.timestamp())
            status = await conn.fetchval("SELECT status FROM mailq.emails WHERE id = $1", poison_id)
            return status != "sending"

        await eventually(poison_done, timeout=30, message="the poison email was not refused")
    row = await conn.fetchrow(
        "SELECT mailq.email_state(status, run_at, attempts) AS state, attempts, last_error,"
        " finished_at FROM mailq.emails WHERE id = $1",
        poison_id,
    )
    attempts = await conn.fetch(
        "SELECT outcome, error FROM mailq.attempts WHERE email_id = $1", poison_id
    )
    assert row["state"] == "failed"
    assert [a["outcome"] for a in attempts] == ["failed"], "refused once, never lost"
    assert "render budget" in row["last_error"]
    # The neighbour went out while the poison was still being rendered.
    assert neighbour_s < 2 * LEASE_S
    sent_at = await conn.fetchval(
        "SELECT finished_at FROM mailq.emails WHERE id = $1", neighbour_id
    )
    assert sent_at < row["finished_at"]
    # The heartbeat renewed the lease throughout (every lease/5; never a lease's gap).
    gaps = [b - a for a, b in itertools.pairwise(heartbeats)]
    assert heartbeats and max(gaps, default=0.0) < LEASE_S
    assert all("done" not in r.message.get_payload() for r in smtp_sink.received)
