"""Backoff between attempts: exponential, capped, with jitter so retries do not stampede."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

RETRY_BASE_S = 30.0
RETRY_CAP_S = 6 * 3600.0


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
