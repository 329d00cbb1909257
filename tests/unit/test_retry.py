from __future__ import annotations

import pytest

from mailq.retry import RetryPolicy


def test_backoff_doubles_per_attempt_up_to_the_cap() -> None:
    policy = RetryPolicy(base_s=10, cap_s=100, jitter=0)
    assert [policy.delay_s(a) for a in range(1, 6)] == [10, 20, 40, 80, 100]


@pytest.mark.parametrize("draw", [0.0, 0.5, 0.999])
def test_jitter_stays_within_its_band(draw: float) -> None:
    policy = RetryPolicy(base_s=10, cap_s=1000, jitter=0.25)
    assert 7.5 <= policy.delay_s(1, rand=lambda: draw) <= 12.5


def test_huge_attempt_numbers_do_not_overflow() -> None:
    assert RetryPolicy(base_s=1, cap_s=60, jitter=0).delay_s(10_000) == 60
