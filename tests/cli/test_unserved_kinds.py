"""`mailq status` warns about kinds whose emails wait with no live worker to serve them (a
defect of the issue: such emails waited forever and status gave no hint)."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Iterator

import asyncpg
import pytest

from mailq import enqueue
from mailq.admin import unserved_kinds
from mailq.cli.main import main
from mailq.db.leases import WorkerIdentity, worker_lease_register
from mailq.kinds import BUILTIN_KINDS, KindPolicy
from tests.support.emails import welcome


@pytest.fixture(autouse=True)
def keep_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_unserved_kinds_are_those_waiting_without_a_worker_paused_ones_aside() -> None:
    counts = [
        {"kind": "welcome", "state": "queued", "count": 3},
        {"kind": "newsletter", "state": "queued", "count": 2},
        {"kind": "newsletter", "state": "retrying", "count": 1},
        {"kind": "old", "state": "sent", "count": 9},
        {"kind": "held", "state": "scheduled", "count": 4},
        {"kind": "digest", "state": "scheduled", "count": 5},
    ]
    workers = [{"kinds": ["welcome", "search_engine"]}]
    assert unserved_kinds(counts, workers, paused=["held"]) == {"digest": 5, "newsletter": 3}
    assert unserved_kinds(counts, [{"kinds": ["newsletter", "digest", "held"]}]) == {"welcome": 3}


async def test_status_warns_about_a_kind_no_live_worker_serves(
    database_url: str, conn: asyncpg.Connection, capsys: pytest.CaptureFixture[str]
) -> None:
    kinds = {**BUILTIN_KINDS, "newsletter": KindPolicy("newsletter", 5)}
    await enqueue(conn, welcome(1), welcome(2, kind="newsletter"), kinds=kinds)
    worker = WorkerIdentity(uuid.uuid4(), "host", 1, tuple(BUILTIN_KINDS), 16)
    await worker_lease_register(conn, worker, 60)
    argv = ["--log-level", "WARNING", "--database-url", database_url, "status"]
    # The CLI runs its own event loop: call it from a thread, as from a shell.
    assert await asyncio.to_thread(main, argv) == 0
    out = capsys.readouterr().out
    warnings = [line for line in out.splitlines() if line.startswith("Warning:")]
    assert len(warnings) == 1, out
    assert "1 emails of kind newsletter wait and no live worker serves it" in warnings[0]
    assert "mailq worker --kinds newsletter" in warnings[0]
    assert await asyncio.to_thread(main, [*argv, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["unserved_kinds"] == {"newsletter": 1}
