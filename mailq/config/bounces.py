"""The bounce sections of MAILQ_CONFIG: `[bounces]` (the policy of mailq.bounces.policy and the
feedback-loop address), per kind `[kinds.X.bounces]`, and `[webhooks.<provider>]` (checked
when the service builds the webhooks, mailq.bounces.webhooks)::

    [bounces]
    feedback_address = "fbl@bounces.example.com"   # where ARF reports come
    hard = "suppress"                  # or "ignore"; complaint likewise
    soft_threshold = 3                 # soft bounces within soft_window_days (14) suppress
    soft_suppression_days = 30         # ... for this long
    pause_min_sent = 500               # a campaign pauses itself past these rates
    pause_hard_bounce_rate = 0.05
    pause_complaint_rate = 0.003

    [kinds.search_engine.bounces]      # the same keys, feedback_address aside
    pause_hard_bounce_rate = 0.03

    [webhooks.postmark]                # one table per provider: ses, postmark, mailgun, ...
    username = "mailq"
    password = "..."
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from mailq.bounces.policy import (
    DEFAULT_POLICY,
    POLICY_KEYS,
    BouncePolicy,
    PolicyProblem,
    policy_from_table,
)
from mailq.config import toml
from mailq.config.toml import Problem, Where

WEBHOOK_PROVIDERS = ("ses", "postmark", "mailgun", "sendgrid", "resend")
KIND_KEY = "bounces"  # the key of a kind's own policy: [kinds.X.bounces]


def _policy(table: Mapping[str, Any], where: Where, base: BouncePolicy) -> BouncePolicy:
    known = POLICY_KEYS | ({"feedback_address"} if where == ("bounces",) else set())
    toml.known(table, known, where)
    try:
        return policy_from_table({k: v for k, v in table.items() if k in POLICY_KEYS}, base)
    except PolicyProblem as problem:
        raise Problem((*where, problem.key), problem.reason) from None


def policy(data: Mapping[str, Any]) -> BouncePolicy:
    """[bounces]: the policy of every kind without its own."""
    return _policy(toml.table(data.get("bounces", {}), ("bounces",)), ("bounces",), DEFAULT_POLICY)


def kind_policies(data: Mapping[str, Any], base: BouncePolicy) -> Mapping[str, BouncePolicy]:
    """[kinds.X.bounces]: the kinds with a policy of their own (on top of [bounces])."""
    found: dict[str, BouncePolicy] = {}
    for name, table in toml.table(data.get("kinds", {}), ("kinds",)).items():
        if isinstance(table, Mapping) and KIND_KEY in table:
            where = ("kinds", name, KIND_KEY)
            found[name] = _policy(toml.table(table[KIND_KEY], where), where, base)
    return MappingProxyType(found)


def feedback_address(data: Mapping[str, Any]) -> str | None:
    """[bounces] feedback_address: the registered address of the feedback loops."""
    table = toml.table(data.get("bounces", {}), ("bounces",))
    if "feedback_address" not in table:
        return None
    address = toml.string(table["feedback_address"], ("bounces", "feedback_address"))
    if address.count("@") != 1 or re.search(r"[\s<>]", address):
        raise Problem(("bounces", "feedback_address"), "must be an email address")
    return address.lower()


def webhooks(data: Mapping[str, Any]) -> Mapping[str, Mapping[str, Any]]:
    """[webhooks.<provider>]: one table per provider, its keys checked by the provider."""
    tables = toml.table(data.get("webhooks", {}), ("webhooks",))
    for provider, table in tables.items():
        if provider not in WEBHOOK_PROVIDERS:
            raise Problem(
                ("webhooks", provider), f"unknown provider (known: {', '.join(WEBHOOK_PROVIDERS)})"
            )
        toml.table(table, ("webhooks", provider))
    return MappingProxyType({p: MappingProxyType(dict(t)) for p, t in tables.items()})
