"""What mailq does about bounces and complaints: `[bounces]` of MAILQ_CONFIG (and per kind
`[kinds.X.bounces]`), with SPEC.md's defaults.

- `hard = "suppress"`, `complaint = "suppress"`: a hard bounce or a complaint suppresses the
  recipient (`"ignore"`: recorded only).
- `soft_threshold = 3` soft bounces within `soft_window_days = 14` suppress the recipient for
  `soft_suppression_days = 30` (the suppression expires).
- A refusal about the sender (`Event.sender_side`: 5.7.26, 5.7.515, 5.7.28, 4.7.x ...) never
  suppresses anyone; it counts toward the breaker's bounce rate.
- A campaign that has sent at least `pause_min_sent` emails pauses itself when its hard-bounce
  rate (hard bounces and refusals about the sender, per email sent) passes
  `pause_hard_bounce_rate` or its complaint rate passes `pause_complaint_rate`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

SUPPRESS = "suppress"
IGNORE = "ignore"
ACTIONS = (SUPPRESS, IGNORE)


class PolicyProblem(ValueError):
    """A bad `[bounces]` setting: `key` names it, the message says why."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(reason)
        self.key = key
        self.reason = reason


@dataclass(frozen=True, slots=True)
class BouncePolicy:
    hard: str = SUPPRESS
    complaint: str = SUPPRESS
    soft_threshold: int = 3
    soft_window_days: float = 14.0
    soft_suppression_days: float = 30.0
    pause_min_sent: int = 500
    pause_hard_bounce_rate: float = 0.05
    pause_complaint_rate: float = 0.003

    def breach(self, sent: int, hard_bounced: int, complained: int) -> str | None:
        """Why a campaign with these counts must pause, or None."""
        if sent < self.pause_min_sent or sent <= 0:
            return None
        hard_rate = hard_bounced / sent
        if hard_rate > self.pause_hard_bounce_rate:
            return (
                f"hard-bounce rate {hard_rate:.1%} ({hard_bounced} of {sent} sent) is over "
                f"{self.pause_hard_bounce_rate:.1%}"
            )
        complaint_rate = complained / sent
        if complaint_rate > self.pause_complaint_rate:
            return (
                f"complaint rate {complaint_rate:.2%} ({complained} of {sent} sent) is over "
                f"{self.pause_complaint_rate:.2%}"
            )
        return None


DEFAULT_POLICY = BouncePolicy()
_ACTION_KEYS = frozenset({"hard", "complaint"})
_WHOLE_KEYS = frozenset({"soft_threshold", "pause_min_sent"})
_RATE_KEYS = frozenset({"pause_hard_bounce_rate", "pause_complaint_rate"})
POLICY_KEYS = frozenset(f.name for f in fields(BouncePolicy))


def policy_from_table(
    table: Mapping[str, Any], base: BouncePolicy = DEFAULT_POLICY
) -> BouncePolicy:
    """`base` with the settings of one `[bounces]` table; PolicyProblem for a bad one (the
    caller has checked that every key is known)."""
    changes: dict[str, Any] = {}
    for key, value in table.items():
        if key in _ACTION_KEYS:
            if value not in ACTIONS:
                raise PolicyProblem(key, f"must be one of {', '.join(ACTIONS)}")
            changes[key] = value
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise PolicyProblem(key, "must be a number")
        if key in _WHOLE_KEYS:
            if not isinstance(value, int) or value < 1:
                raise PolicyProblem(key, "must be a whole number of at least 1")
            changes[key] = value
        elif key in _RATE_KEYS:
            if not 0 < value <= 1:
                raise PolicyProblem(key, "must be a ratio above 0, at most 1 (0.05 is 5%)")
            changes[key] = float(value)
        else:
            if value <= 0:
                raise PolicyProblem(key, "must be a positive number of days")
            changes[key] = float(value)
    return replace(base, **changes)
