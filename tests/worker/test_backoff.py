"""The worker's one back-off-and-log helper: the pace, the reset, and what it logs."""

from __future__ import annotations

import logging

import pytest

from mailq.worker.backoff import DB_RETRY_MAX_S, DB_RETRY_MIN_S, Backoff

logger = logging.getLogger("tests.backoff")


def test_the_wait_doubles_up_to_the_cap_and_a_success_resets_it() -> None:
    backoff = Backoff(logger, "claiming failed; retrying", "claim_failed")
    delays = [backoff.failed(OSError("down")) for _ in range(8)]
    assert delays[:3] == [DB_RETRY_MIN_S, DB_RETRY_MIN_S * 2, DB_RETRY_MIN_S * 4]
    assert max(delays) == DB_RETRY_MAX_S and delays[-1] == DB_RETRY_MAX_S
    assert backoff.failures == 8
    backoff.succeeded()
    assert backoff.failed(OSError("down")) == DB_RETRY_MIN_S
    assert backoff.failures == 1


def test_a_database_error_is_a_warning_and_a_bug_an_error_with_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    backoff = Backoff(logger, "recording failed; retrying", "record_failed", extra={"x": 1})
    with caplog.at_level(logging.WARNING, logger="tests.backoff"):
        for exc, doing in [
            (ConnectionResetError("connection lost"), None),
            (KeyError("bug"), "recording 3 outcomes failed; retrying"),
        ]:
            try:
                raise exc
            except Exception as caught:  # as in the worker's loops
                backoff.failed(caught, doing)
    expected, bug = caplog.records
    assert expected.levelno == logging.WARNING and not expected.exc_info
    assert expected.getMessage() == "recording failed; retrying in 0.2s: connection lost"
    assert (expected.action, expected.x) == ("record_failed", 1)  # type: ignore[attr-defined]
    assert bug.levelno == logging.ERROR and bug.exc_info and bug.exc_info[0] is KeyError
    assert bug.getMessage() == "recording 3 outcomes failed; retrying in 0.4s: 'bug'"


async def test_pause_waits_with_the_sleep_it_is_given() -> None:
    waited: list[float] = []

    async def sleep(seconds: float) -> None:
        waited.append(seconds)

    backoff = Backoff(logger, "x failed; retrying", "x_failed", min_s=1.0, max_s=3.0)
    for _ in range(3):
        await backoff.pause(OSError("down"), sleep=sleep)
    assert waited == [1.0, 2.0, 3.0]
