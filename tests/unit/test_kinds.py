from __future__ import annotations

from mailq.kinds import BUILTIN_KINDS, WELCOME, KindPolicy, plan_claim, welcome_reserve

ALL = list(BUILTIN_KINDS.values())


def test_welcome_is_served_first_and_campaigns_leave_its_reserve_free() -> None:
    plan = plan_claim(16, {}, ALL)
    assert plan.kinds[0] == WELCOME
    assert plan.limits[0] == 16
    reserve = welcome_reserve(16)
    assert all(limit == 16 - reserve for limit in plan.limits[1:])


def test_campaigns_busy_in_every_slot_still_leave_room_for_welcome() -> None:
    reserve = welcome_reserve(16)
    in_flight = {"search_engine": 16 - reserve}
    plan = plan_claim(16, in_flight, ALL)
    assert plan.kinds == [WELCOME]
    assert plan.limits == [reserve]


def test_a_full_worker_claims_nothing() -> None:
    plan = plan_claim(4, {WELCOME: 4}, ALL)
    assert plan.total == 0 and plan.kinds == []


def test_campaigns_of_equal_priority_take_turns() -> None:
    first = plan_claim(16, {}, ALL, turn=0).kinds[1:]
    second = plan_claim(16, {}, ALL, turn=1).kinds[1:]
    assert sorted(first) == sorted(second)
    assert first[0] != second[0]


def test_a_kind_cap_limits_its_claims() -> None:
    capped = [KindPolicy("slow", priority=5, concurrency=2)]
    assert plan_claim(16, {"slow": 1}, capped).limits == [1]
