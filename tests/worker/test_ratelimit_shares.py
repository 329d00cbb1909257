"""Sharing a bucket's tokens among kinds: welcome first, campaigns above the reserve."""

from __future__ import annotations

import pytest

from mailq.worker.ratelimit import BACKEND, Bucket, allocate, bucket_name


def backend(tokens: float, reserve: float = 2.0, rate: float = 10.0) -> dict[str, Bucket]:
    return {BACKEND: Bucket(BACKEND, rate, 10.0, reserve, tokens)}


def test_welcome_is_served_first_and_may_use_the_reserve() -> None:
    grant = allocate([("welcome", 3), ("search_engine", 10)], backend(4.0))
    assert grant.allowed == {"welcome": 3, "search_engine": 0}
    assert grant.taken == {BACKEND: 3.0}
    # The campaign waits until a token above the reserve: (2 + 1 - 1) / 10 s.
    assert grant.wait_s == pytest.approx(0.2)


def test_campaigns_take_only_what_is_above_the_reserve() -> None:
    grant = allocate([("welcome", 0), ("search_engine", 10)], backend(7.5))
    assert grant.allowed["search_engine"] == 5
    assert grant.wait_s == pytest.approx((2 + 1 - 2.5) / 10)


def test_a_kind_bucket_and_the_backend_bucket_both_bind() -> None:
    buckets = backend(9.0, reserve=0)
    buckets[bucket_name("news")] = Bucket(bucket_name("news"), 2.0, 2.0, 0.0, 1.2)
    grant = allocate([("news", 5), ("search_engine", 5)], buckets)
    assert grant.allowed == {"news": 1, "search_engine": 5}
    assert grant.taken[BACKEND] == 6
    assert grant.wait_s == pytest.approx((1 - 0.2) / 2.0)


def test_unlimited_kinds_take_what_they_ask() -> None:
    grant = allocate([("welcome", 7)], {})
    assert grant.allowed == {"welcome": 7} and grant.taken == {} and grant.wait_s is None
