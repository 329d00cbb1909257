"""Backoff between attempts: exponential, capped, with jitter so retries do not stampede.

Retries are time-based (SPEC.md "Expiry and retry for days"): an email is tried again after
each transient failure until `retry_for` has passed since it was first due (5 days by
default, as mail servers do: RFC 5321 §4.5.4.1, Postfix's maximal_queue_lifetime), the wait
between two attempts growing to at most an hour.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

RETRY_BASE_S = 30.0
RETRY_CAP_S = 3600.0
RETRY_FOR_S = 5 * 86400.0


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    base_s: float = RETRY_BASE_S
    cap_s: float = RETRY_CAP_S
    # Each delay is drawn from [delay * (1 - jitter), delay * (1 + jitter)].
    jitter: float = 0.25

    def delay_s(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds to wait after failed attempt number `attempt` (1 for the first)."""
        exponent = min(max(attempt - 1, 0), 40)
        delay = min(self.cap_s, self.base_s * (2.0**exponent))
        return max(0.0, delay * (1.0 + self.jitter * (2.0 * rand() - 1.0)))


_UNITS = (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1))


def format_duration(seconds: float) -> str:
    """A span for people, in its two largest units: `5 days`, `2 hours 30 minutes`, `40
    seconds`."""
    left = max(0, round(seconds))
    parts: list[str] = []
    for name, size in _UNITS:
        count, left = divmod(left, size)
        if count or (parts and len(parts) < 2):
            parts.append(f"{count} {name}{'' if count == 1 else 's'}")
        if len(parts) == 2:
            break
    parts = [p for p in parts if not p.startswith("0 ")] or ["0 seconds"]
    return " ".join(parts)


def gave_up(reason: str, elapsed_s: float) -> str:
    """The last error of an email whose retries ran out: the last transient error, prefixed."""
    return f"gave up after {format_duration(elapsed_s)}: {reason}"
