"""(e) A worker frozen (SIGSTOP) past its lease, then woken (SIGCONT): its claims were taken
back and sent by others; once awake it must not send them again.

The frozen worker sends to a relay of its own, so what it sends after it wakes is told
apart from what the others send. That relay is slow to answer RCPT rather than DATA, so
that the frozen worker's sends are caught before DATA (what the woken worker would go on to
send) rather than waiting for the reply to a DATA already sent (which may count once more
whatever the worker does: the bound of `concurrency`)."""

from __future__ import annotations

import signal
import time
from collections import Counter
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
OTHERS = 3
# The frozen worker's claims are taken back within: its lease (5 s) and a rescue (1 s).
TAKE_BACK_BOUND_S = 30.0
RECOVERY_BOUND_S = 30.0


async def test_a_worker_frozen_past_its_lease_does_not_send_its_old_claims_when_it_wakes(
    database_url: str, relay: RecordingRelay, workers_log: Path
) -> None:
    await enqueue_emails(database_url, TOTAL)
    observer = Observer(database_url)
    checks = Checks()
    env = chaos_env(worker_env(database_url, relay.url))
    own_relay = RecordingRelay(rcpt_delay_s=relay.delay_s)
    with own_relay as own, Fleet(env, workers_log) as fleet:
        fleet.start(1, env=chaos_env(worker_env(database_url, own.url)))
        (frozen,) = fleet.pids
        fleet.start(OTHERS)

        async def frozen_is_sending() -> bool:
            return own.received >= 50 and frozen in await fleet.holders(observer)

        await wait_until(frozen_is_sending, timeout=60, message="the worker did not start")
        worker_id = await observer.fetchval(
            "SELECT id FROM mailq.worker_leases WHERE pid = $1", frozen
        )
        fleet.signal(frozen, signal.SIGSTOP)
        stopped_at = time.time()

        async def taken_back() -> bool:
            held = await observer.fetchval(
                "SELECT count(*) FROM mailq.emails WHERE status = 'sending' AND worker_id = $1",
                worker_id,
            )
            return bool(held == 0)

        await wait_until(taken_back, timeout=TAKE_BACK_BOUND_S, message="claims not taken back")
        fleet.signal(frozen, signal.SIGCONT)
        fault_ended = time.time()
        assert (await observer.count("sent") or 0) < TOTAL, "the drain ended before the wake-up"
        await sent_by(observer, TOTAL, RECOVERY_BOUND_S)
        fleet.stop()
        own_deliveries = own.deliveries
    # Per email taken back from it: how many attempts the woken worker made of it after the
    # one taken back (claimed again once awake: those sends are its right).
    rows = await observer.fetch(
        "SELECT e.message_id, count(*) FILTER (WHERE a.attempt > lost.attempt) AS again "
        "FROM mailq.attempts lost JOIN mailq.emails e ON e.id = lost.email_id "
        "JOIN mailq.attempts a ON a.email_id = lost.email_id AND a.worker_id = lost.worker_id "
        "WHERE lost.worker_id = $1 AND lost.outcome = 'lost' GROUP BY e.message_id",
        worker_id,
    )
    claimed_again = {r["message_id"]: r["again"] for r in rows or []}
    taken = set(claimed_again)
    # A send of a taken-back email that the woken worker began DATA of after it woke, beyond
    # its attempts claimed again, of an email that went out more than once: its stale
    # attempt, sent after it could know the lease was gone. (A stale send whose DATA began
    # before it froze is the documented window: the duplicate bound.)
    delivered = relay.counts() + own.counts()
    after_wake = Counter(
        d.message_id
        for d in own_deliveries
        if d.message_id in taken and d.data_began >= fault_ended
    )
    resent_after_wake = {
        m for m, n in after_wake.items() if n > claimed_again[m] and delivered[m] > 1
    }
    result = await figures(
        "SIGSTOP past the lease, then SIGCONT",
        observer,
        [relay, own],
        total=TOTAL,
        fault_ended=fault_ended,
        # Sends whose DATA was under way when it froze may complete: at most its slots.
        duplicate_bound=CONCURRENCY,
        recovery_bound_s=RECOVERY_BOUND_S,
        burnt_bound=2 * CONCURRENCY,  # its claims (claimed ahead too), taken back (`lost`)
    )
    result.notes.update(
        frozen_s=round(fault_ended - stopped_at, 1),
        taken_back=len(taken),
        duplicated_by_woken_worker=len(resent_after_wake),
        log=log_summary(workers_log),
    )
    await observer.close()
    result.report()
    checks.that(bool(taken), "nothing was taken back from the frozen worker")
    checks.that(
        not resent_after_wake,
        f"the woken worker sent {len(resent_after_wake)} emails taken back from it again",
    )
    checks.standard(result)
    checks.done()
