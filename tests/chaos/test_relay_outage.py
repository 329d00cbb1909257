"""(d) The relay refuses connections, then answers 421 at the greeting, then hangs (accepts
and never greets), 12 s each, in the middle of a drain: the outage is the relay's, not the
emails', so it costs them no attempt (SPEC "Expiry and retry for days": outcome
`deferred`), and the queue drains by itself once the relay is back."""

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
from tests.support.relay import RecordingRelay, RelayMode

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(TEST_TIMEOUT_S)]

TOTAL = 3_000
WORKERS = 4
PHASE_S = 12.0
OUTAGE = (RelayMode.REFUSE, RelayMode.GREET_421, RelayMode.HANG)
# From the relay accepting again: the backend's breaker probes (backoff exponential, capped)
# and closes, and the queue drains.
RECOVERY_BOUND_S = 45.0
# Sends in flight when the relay went down may be charged to their email; no other attempt.
BURNT_BOUND = WORKERS * CONCURRENCY


async def test_a_relay_outage_burns_no_attempts_and_recovers_by_itself(
    database_url: str, relay: RecordingRelay, workers_log: Path
) -> None:
    await enqueue_emails(database_url, TOTAL)
    observer = Observer(database_url)
    checks = Checks()
    with Fleet(chaos_env(worker_env(database_url, relay.url)), workers_log) as fleet:
        fleet.start(WORKERS)

        async def draining() -> bool:
            return relay.received >= 300

        await wait_until(draining, timeout=60, message="the workers did not start sending")
        before_outage = 0
        for phase, mode in enumerate(OUTAGE):
            relay.set_mode(mode)
            if phase == 0:
                # Counted once the relay is down: a reply written while it switched counts
                # as before the outage.
                before_outage = relay.received
            # Paced by a timer: each failure mode lasts this long, whatever the workers do.
            await asyncio.sleep(PHASE_S)
        relay.set_mode(RelayMode.ACCEPT)
        fault_ended = time.time()
        assert relay.received == before_outage, "the relay accepted mail during its outage"
        assert (await observer.count("sent") or 0) < TOTAL, "the drain ended before the outage"
        burnt_in_outage = await observer.fetchval(
            "SELECT count(*) FROM mailq.attempts WHERE outcome NOT IN ('sent', 'deferred')"
        )
        # Checked at once (the figures come later): an outage that burnt attempts fails
        # here rather than after the recovery deadline.
        checks.that(
            burnt_in_outage <= BURNT_BOUND,
            f"{burnt_in_outage} attempts counted against emails during the relay's outage",
        )
        await sent_by(observer, TOTAL, RECOVERY_BOUND_S)
        fleet.stop()
    result = await figures(
        "relay refuses, then 421, then hangs (12 s each)",
        observer,
        [relay],
        total=TOTAL,
        fault_ended=fault_ended,
        duplicate_bound=0,  # no worker died
        recovery_bound_s=RECOVERY_BOUND_S,
        burnt_bound=BURNT_BOUND,
    )
    result.notes.update(
        burnt_during_outage=burnt_in_outage,
        connections_421=relay.connections(RelayMode.GREET_421),
        connections_hang=relay.connections(RelayMode.HANG),
        log=log_summary(workers_log),
    )
    await observer.close()
    result.report()
    checks.standard(result)
    checks.done()
