"""(b) `pg_ctl restart -m immediate` of the queue's PostgreSQL in the middle of a drain."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.support.chaos import (
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
from tests.support.private_postgres import PrivatePostgres
from tests.support.processes import worker_env
from tests.support.relay import RecordingRelay

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(TEST_TIMEOUT_S)]

TOTAL = 3_000
WORKERS = 3
# From the server accepting again: the workers reconnect (backoff at most 5 s) and drain
# the rest of the queue.
RECOVERY_BOUND_S = 25.0


async def test_an_immediate_restart_of_postgres_loses_and_duplicates_nothing(
    private_pg: PrivatePostgres, relay: RecordingRelay, workers_log: Path
) -> None:
    url = private_pg.url("mailq")
    await enqueue_emails(url, TOTAL)
    observer = Observer(url)
    checks = Checks()
    with Fleet(chaos_env(worker_env(url, relay.url)), workers_log) as fleet:
        fleet.start(WORKERS)

        async def draining() -> bool:
            return relay.received >= 600

        await wait_until(draining, timeout=60, message="the workers did not start sending")
        began = time.monotonic()
        private_pg.restart("immediate")  # a crash, crash recovery, up again
        downtime = time.monotonic() - began
        fault_ended = time.time()
        assert (await observer.count("sent") or 0) < TOTAL, "the drain ended before the restart"
        await sent_by(observer, TOTAL, RECOVERY_BOUND_S)
        fleet.stop()
    result = await figures(
        "pg_ctl restart -m immediate",
        observer,
        [relay],
        total=TOTAL,
        fault_ended=fault_ended,
        duplicate_bound=0,  # no worker died
        recovery_bound_s=RECOVERY_BOUND_S,
        burnt_bound=0,
    )
    result.notes.update(downtime_s=round(downtime, 2), log=log_summary(workers_log))
    await observer.close()
    result.report()
    checks.standard(result)
    checks.done()
