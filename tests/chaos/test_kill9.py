"""(a) kill -9 of a random worker every 0.5 s, each replaced by a new one, mid-drain."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tests.support.chaos import (
    CONCURRENCY,
    TEST_TIMEOUT_S,
    Checks,
    Fleet,
    Observer,
    chaos_env,
    enqueue_emails,
    figures,
    log_summary,
    sent_by,
    wait_until,
)
from tests.support.processes import worker_env
from tests.support.relay import RecordingRelay

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(TEST_TIMEOUT_S)]

TOTAL = 3_000
WORKERS = 4
KILL_EVERY_S = 0.5
KILLING_FOR_S = 8.0
# From the last kill: the victims' leases expire (5 s), a rescue runs (every 1 s), and the
# rest of the queue drains.
RECOVERY_BOUND_S = 30.0


async def test_kill_9_every_half_second_loses_nothing(
    database_url: str, relay: RecordingRelay, workers_log: Path
) -> None:
    await enqueue_emails(database_url, TOTAL)
    observer = Observer(database_url)
    checks = Checks()
    with Fleet(chaos_env(worker_env(database_url, relay.url)), workers_log) as fleet:
        fleet.start(WORKERS)

        async def draining() -> bool:
            return relay.received >= 200

        await wait_until(draining, timeout=60, message="the workers did not start sending")
        began = time.monotonic()
        while time.monotonic() - began < KILLING_FOR_S:
            # A worker holding claims, by the database's word (else any live one).
            victims = await fleet.holders(observer) or fleet.pids
            fleet.kill(fleet.random.choice(victims))
            # Paced by a timer: the fault schedule, not a wait for an outcome.
            await asyncio.sleep(KILL_EVERY_S)
        fault_ended = time.time()
        assert (await observer.count("sent") or 0) < TOTAL, "the drain ended before the kills"
        await sent_by(observer, TOTAL, RECOVERY_BOUND_S)
        fleet.stop()
    bound = fleet.killed * CONCURRENCY
    result = await figures(
        "kill -9 every 0.5 s",
        observer,
        [relay],
        total=TOTAL,
        fault_ended=fault_ended,
        duplicate_bound=bound,
        recovery_bound_s=RECOVERY_BOUND_S,
        burnt_bound=2 * bound,  # claimed ahead too (mailq.worker.claimer)
    )
    result.notes.update(kills=fleet.killed, log=log_summary(workers_log))
    await observer.close()
    result.report()
    checks.standard(result)
    checks.done()
