"""The in-flight ledger: a send slot is freed only after its outcome is committed."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from mailq.models import ClaimedEmail
from mailq.worker.slots import SlotLedger


def claimed(email_id: int, kind: str = "welcome") -> ClaimedEmail:
    return ClaimedEmail(
        id=email_id,
        kind=kind,
        priority=0,
        attempt=1,
        max_attempts=5,
        to=f"user{email_id}@example.com",
        message_id=f"<{email_id}@example.com>",
        content={},
        claimed_at=datetime.now(UTC),
    )


def test_a_claim_takes_a_slot_per_email_counted_by_kind() -> None:
    ledger = SlotLedger()
    slots = ledger.take([claimed(1), claimed(2, "news"), claimed(3, "news")])
    assert [s.email.id for s in slots] == [1, 2, 3]
    assert len(ledger) == 3 and 2 in ledger
    assert dict(ledger.by_kind) == {"welcome": 1, "news": 2}
    assert ledger.held_ids() == [1, 2, 3]


def test_a_started_slot_is_freed_by_its_committed_outcome_only() -> None:
    ledger = SlotLedger()
    first, second = ledger.take([claimed(1), claimed(2)])
    first.started = True  # handed to the sender
    assert ledger.unstarted() == [second.email]
    with pytest.raises(ValueError, match=r"\[1\] started"):
        ledger.free_handed_back([first.email, second.email])
    assert len(ledger) == 2, "a refused hand-back frees nothing"
    ledger.free_handed_back([second.email])
    assert ledger.held_ids() == [1]
    ledger.free_committed([first.email])
    assert len(ledger) == 0 and dict(ledger.by_kind) == {}


def test_freeing_is_idempotent_and_kinds_holding_none_disappear() -> None:
    ledger = SlotLedger()
    (slot,) = ledger.take([claimed(7, "news")])
    ledger.free_committed([slot.email])
    ledger.free_committed([slot.email])  # a retried batch: nothing freed twice
    ledger.take([claimed(8, "news")])
    assert dict(ledger.by_kind) == {"news": 1}
    assert 7 not in ledger


def test_at_most_concurrency_start_and_the_reserve_is_kept_for_welcome() -> None:
    ledger = SlotLedger(4, reserved_kind="welcome", reserve=1)
    slots = ledger.take([claimed(i, "news") for i in range(1, 6)] + [claimed(9)])
    for slot in slots[:3]:
        assert ledger.may_start("news")
        ledger.start(slot)
    assert not ledger.may_start("news"), "the last send is kept for welcome"
    assert ledger.may_start("welcome")
    ledger.start(slots[-1])
    assert ledger.sending == 4 and not ledger.may_start("welcome")
    assert len(ledger.unstarted()) == 2, "claimed ahead, waiting"
    ledger.free_committed([slots[0].email])
    assert ledger.sending == 3 and ledger.may_start("news")


def test_claimed_emails_start_welcome_first_then_by_priority_while_the_ledger_lets_them() -> None:
    from mailq.worker.lanes import _Waiting

    ledger = SlotLedger(3, reserved_kind="welcome", reserve=1)
    waiting = _Waiting(ledger)
    emails = [
        replace(claimed(1, "news"), priority=5),
        replace(claimed(2, "alerts"), priority=1),
        replace(claimed(3, "news"), priority=5),
        claimed(4),
    ]
    waiting.extend(ledger.take(emails))
    order = []
    while (slot := waiting.pop()) is not None:
        ledger.start(slot)
        order.append(slot.email.id)
    assert order == [4, 2, 1], "welcome, then priority 1, then 5; the third send is the last"
    assert len(waiting) == 1 and not waiting.ready()


def test_an_email_claimed_again_while_its_old_attempt_is_in_flight_keeps_that_one_revoked() -> None:
    # The worker's lease lapsed: attempt 1 was taken back (revoked here) and the email, due
    # again, claimed by this worker once more while attempt 1's send still waits on SMTP.
    ledger = SlotLedger(4)
    (old,) = ledger.take([claimed(5)])
    ledger.start(old)
    assert ledger.revoke_unheld([old.email], held=set()) == 1
    (new,) = ledger.take([replace(old.email, attempt=2)])
    assert ledger.revoked(old.email) and not ledger.revoked(new.email)
    assert len(ledger) == 2 and ledger.held_ids() == [5]
    ledger.start(new)
    assert ledger.sending == 2
    ledger.free_committed([old.email])  # the old attempt's outcome, refused
    assert len(ledger) == 1 and ledger.sending == 1 and not ledger.revoked(new.email)
    ledger.free_committed([new.email])
    assert len(ledger) == 0 and ledger.sending == 0 and dict(ledger.by_kind) == {}
