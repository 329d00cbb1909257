"""(c) The queue's PostgreSQL down for longer than the lease, in the middle of a drain: no
worker died, so nothing may be sent twice."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tests.support.chaos import (
    LEASE_S,
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
DOWN_S = 2 * LEASE_S
# From the server accepting again: the workers reconnect (backoff at most 5 s), the leases
# are registered again, and the rest of the queue drains.
RECOVERY_BOUND_S = 30.0


async def test_postgres_down_longer_than_the_lease_sends_nothing_twice(
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
        private_pg.stop("immediate")
        down_at_relay = relay.received
        # Paced by a timer: the outage lasts this long, whatever the workers do.
        await asyncio.sleep(DOWN_S)
        private_pg.start()
        fault_ended = time.time()
        delivered_while_down = relay.received - down_at_relay
        assert (await observer.count("sent") or 0) < TOTAL, "the drain ended before the outage"
        await sent_by(observer, TOTAL, RECOVERY_BOUND_S)
        fleet.stop()
    result = await figures(
        f"Postgres down {DOWN_S} s (lease {LEASE_S} s)",
        observer,
        [relay],
        total=TOTAL,
        fault_ended=fault_ended,
        duplicate_bound=0,  # no worker died
        recovery_bound_s=RECOVERY_BOUND_S,
        burnt_bound=0,
    )
    result.notes.update(delivered_while_down=delivered_while_down, log=log_summary(workers_log))
    await observer.close()
    result.report()
    checks.standard(result)
    checks.done()
