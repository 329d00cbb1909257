"""Kinds of email and the policy each is sent with."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from mailq.retry import RETRY_FOR_S, RetryPolicy

DEFAULT_RETRY = RetryPolicy()
KIND_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")

WELCOME = "welcome"
# The most a kind or an email may set max_attempts to (unset by default: retries are
# time-based, see retry_for). Hourly attempts for 5 days are about 125.
MAX_ATTEMPTS_LIMIT = 1000
CAMPAIGN_PRIORITY = 5
CAMPAIGN_KINDS = ("search_engine", "portfolio_builder", "platform_complete")

# What happens to an email whose worker died during its attempt (SPEC.md, "unknown").
LOST_RETRY = "retry"  # send it again (same Message-ID, so receivers can deduplicate)
LOST_HOLD = "hold"  # once SMTP DATA had begun: state `unknown`, for an operator to decide
LOST_POLICIES = (LOST_RETRY, LOST_HOLD)


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most `rate` emails per second, with bursts of up to `burst` at once.

    A token bucket shared by every worker through Postgres: it holds at most `burst`
    tokens and refills at `rate` per second, so over any window of T seconds at most
    `burst + rate * T` emails start. `reserve` (backend-wide limits only) is the number of
    tokens kept for `welcome`: other kinds take a token only while more than `reserve` are
    left, so a campaign never makes a welcome email wait for the budget.
    """

    rate: float
    burst: float
    reserve: float = 0.0


@dataclass(frozen=True, slots=True)
class KindPolicy:
    """How emails of one kind are sent."""

    name: str
    priority: int
    # An extra cap on attempts (deferred ones not counted); None: none but retry_for.
    max_attempts: int | None = None
    # Seconds from when an email is first due during which transient failures are retried.
    retry_for_s: float = RETRY_FOR_S
    # Seconds from when an email is first due after which it is not sent at all; None: never.
    expire_after_s: float | None = None
    # At most this many sends of the kind in flight per worker; None: no cap of its own.
    concurrency: int | None = None
    retry: RetryPolicy = DEFAULT_RETRY
    # Shared by every worker (mailq.ratelimit); None: no limit of its own.
    rate_limit: RateLimit | None = None
    # The template an email of this kind gets when it gives neither content nor template.
    template: str | None = None
    lost: str = LOST_RETRY
    # Campaign-like kinds carry List-Unsubscribe headers (RFC 8058): the built-in campaign
    # kinds do; a kind declared in MAILQ_CONFIG does only when it says so.
    list_unsubscribe: bool = True
    # The kind's From mailbox (MAILQ_CONFIG [kinds.X] from); None: MAILQ_FROM.
    from_address: str | None = None


BUILTIN_KINDS: Mapping[str, KindPolicy] = MappingProxyType(
    {
        WELCOME: KindPolicy(WELCOME, priority=0, template=WELCOME, list_unsubscribe=False),
        **{
            name: KindPolicy(name, priority=CAMPAIGN_PRIORITY, template=name)
            for name in CAMPAIGN_KINDS
        },
    }
)


def policy_for(kind: str, kinds: Mapping[str, KindPolicy] = BUILTIN_KINDS) -> KindPolicy:
    """The policy of a kind; a kind not declared anywhere gets campaign defaults."""
    return kinds.get(kind) or KindPolicy(kind, priority=CAMPAIGN_PRIORITY)


def welcome_reserve(concurrency: int) -> int:
    """Send slots no other kind may take, so `welcome` never waits behind a campaign."""
    return max(1, concurrency // 8)


@dataclass(frozen=True, slots=True)
class ClaimPlan:
    """How many emails of each kind one claim may take, kinds in the order they are served."""

    kinds: list[str]
    limits: list[int]
    total: int


def plan_claim(
    capacity: int,
    in_flight: Mapping[str, int],
    kinds: Sequence[KindPolicy],
    turn: int = 0,
) -> ClaimPlan:
    """Share the free slots of a worker among its kinds for the next claim.

    `welcome` is served first and alone may use the reserved slots; the other kinds are
    served by priority, equal priorities taking turns (`turn` rotates them) so that one
    campaign's backlog cannot starve another's.
    """
    free = capacity - sum(in_flight.values())
    if free <= 0:
        return ClaimPlan([], [], 0)
    has_welcome = any(k.name == WELCOME for k in kinds)
    reserve_unused = 0
    if has_welcome:
        reserve_unused = max(0, welcome_reserve(capacity) - in_flight.get(WELCOME, 0))
    others = sorted((k for k in kinds if k.name != WELCOME), key=lambda k: (k.priority, k.name))
    if others:
        shift = turn % len(others)
        others = others[shift:] + others[:shift]
        others.sort(key=lambda k: k.priority)  # stable: keeps the rotation within a priority
    names: list[str] = []
    limits: list[int] = []
    for kind in ([policy_for(WELCOME, {k.name: k for k in kinds})] if has_welcome else []) + others:
        room = free if kind.name == WELCOME else free - reserve_unused
        if kind.concurrency is not None:
            room = min(room, kind.concurrency - in_flight.get(kind.name, 0))
        if room > 0:
            names.append(kind.name)
            limits.append(room)
    return ClaimPlan(names, limits, free)
