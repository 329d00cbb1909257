"""Recording events: match each to its email, keep it once in mailq.events, apply the policy.

`record_events(conn, events, rules)` runs in one transaction:

1. the email is found by its id (a VERP token, a provider tag), our Message-ID among sent
   emails, or the provider's message id recorded on an attempt; its kind and campaign are
   copied onto the event row (mailq.event_counts counts them per kind and campaign);
2. the event is inserted once: a second delivery of the same event (same `dedup_key`) is a
   duplicate and changes nothing;
3. the policy of the email's kind (mailq.bounces.policy) decides: a hard bounce, a complaint
   or an unsubscribe suppresses the event's recipient (the email's `to` when the event names
   none, as redacted feedback reports do) and cancels its waiting emails; soft bounces
   suppress it past the threshold, until the suppression expires; a refusal about the sender
   never suppresses anyone;
4. a campaign whose hard-bounce or complaint rate passes the limits pauses itself, the reason
   kept in mailq.bounce_breakers (shown by `mailq status`, the API and /metrics); a kind whose
   rates (events of the last 14 days) pass them trips its breaker as a warning, at most once a
   day: mailq never pauses a kind itself (a `welcome` may carry a password reset), the
   operator decides (`mailq pause KIND`).

An event no email matches is kept (unmatched) but suppresses only when it comes from a verified
provider webhook: an unmatched DSN or feedback report could have been written by anyone.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from mailq.bounces.events import PROVIDER_ARF, PROVIDER_DSN, Event, EventType, Subtype
from mailq.bounces.policy import DEFAULT_POLICY, SUPPRESS, BouncePolicy
from mailq.db import campaigns as campaign_db
from mailq.db.bounce_breakers import bounce_breaker_get, bounce_breaker_trip
from mailq.db.connection import transaction
from mailq.db.emails import email_cancel_by_address
from mailq.db.events import (
    event_campaign_counts,
    event_count_soft,
    event_insert,
    event_kind_counts,
    event_match_email,
)
from mailq.db.suppressions import suppression_add

logger = logging.getLogger(__name__)

REASON_MAX_CHARS = 300
CAMPAIGN_SCOPE = "campaign"
KIND_SCOPE = "kind"
KIND_WINDOW_DAYS = 14  # the window of a kind's rates (mailq.bounces)
KIND_WARNING_EVERY = timedelta(days=1)
_UNVERIFIED_SOURCES = frozenset({PROVIDER_DSN, PROVIDER_ARF})


@dataclass(frozen=True, slots=True)
class BounceRules:
    """The policy of every kind: `[bounces]`, and `[kinds.X.bounces]` where a kind has one."""

    default: BouncePolicy = DEFAULT_POLICY
    kinds: Mapping[str, BouncePolicy] = field(default_factory=dict)

    def for_kind(self, kind: str | None) -> BouncePolicy:
        return self.kinds.get(kind or "", self.default)


@dataclass(slots=True)
class Recorded:
    """What one call recorded and did."""

    recorded: int = 0
    duplicates: int = 0
    unmatched: int = 0
    suppressed: list[str] = field(default_factory=list)
    paused_campaigns: dict[int, str] = field(default_factory=dict)
    kind_warnings: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Match:
    email_id: int | None
    kind: str | None
    campaign_id: int | None
    address: str | None  # the address to suppress, if the policy says so


async def record_events(
    conn: asyncpg.Connection | asyncpg.Pool,
    events: Iterable[Event],
    rules: BounceRules | None = None,
    *,
    now: datetime | None = None,
) -> Recorded:
    """Record `events` and apply the policy (see the module docstring), all in one
    transaction."""
    rules = rules or BounceRules()
    moment = now or datetime.now(UTC)
    result = Recorded()
    async with transaction(conn) as tx:
        campaigns: dict[int, str | None] = {}
        kinds: set[str] = set()
        for event in events:
            match = await _match(tx, event)
            if await event_insert(tx, _row(event, match, now)) is None:
                result.duplicates += 1
                continue
            result.recorded += 1
            if match.email_id is None:
                result.unmatched += 1
            policy = rules.for_kind(match.kind)
            await _apply(tx, event, match, policy, moment, result)
            if match.kind is not None and _counts_for_breaker(event):
                kinds.add(match.kind)
                if match.campaign_id is not None:
                    campaigns[match.campaign_id] = match.kind
        for campaign_id, kind in campaigns.items():
            reason = await _check_campaign(tx, campaign_id, rules.for_kind(kind), now)
            if reason is not None:
                result.paused_campaigns[campaign_id] = reason
        for kind in sorted(kinds):
            warning = await _check_kind(tx, kind, rules.for_kind(kind), moment)
            if warning is not None:
                result.kind_warnings[kind] = warning
    return result


async def _match(tx: asyncpg.Connection, event: Event) -> _Match:
    found = None
    if event.email_id or event.message_id or event.provider_message_id:
        found = await event_match_email(
            tx, event.email_id, event.message_id, event.provider_message_id
        )
    if found is None:
        address = event.recipient if event.provider not in _UNVERIFIED_SOURCES else None
        return _Match(None, None, None, address.lower() if address else None)
    # The address the event is about: its recipient (a cc, or the staging address of
    # MAILQ_REDIRECT_ALL_TO, is not the email's `to`), else the email's `to`.
    address = (event.recipient or found["to_address"]).lower()
    return _Match(found["id"], found["kind"], found["campaign_id"], address)


def _row(event: Event, match: _Match, now: datetime | None) -> tuple[Any, ...]:
    return (
        match.email_id,
        match.kind,
        match.campaign_id,
        str(event.type),
        str(event.subtype) if event.subtype else None,
        event.sender_side,
        event.provider,
        event.recipient,
        event.status,
        event.diagnostic,
        event.feedback_type,
        event.provider_message_id,
        event.message_id,
        event.dedup_key,
        event.occurred_at,
        now,
    )


def _counts_for_breaker(event: Event) -> bool:
    return event.type in {EventType.BOUNCED, EventType.COMPLAINED}


async def _apply(
    tx: asyncpg.Connection,
    event: Event,
    match: _Match,
    policy: BouncePolicy,
    now: datetime,
    result: Recorded,
) -> None:
    """Suppress the address when the policy says so."""
    address = match.address
    if address is None or event.sender_side:
        return
    expires_at = None
    if event.type is EventType.BOUNCED and event.subtype is Subtype.HARD:
        if policy.hard != SUPPRESS:
            return
        reason = f"hard bounce ({event.provider}): {_detail(event)}"
    elif event.type is EventType.BOUNCED:
        since = now - timedelta(days=policy.soft_window_days)
        soft = await event_count_soft(tx, event.recipient or address, since)
        if soft < policy.soft_threshold:
            return
        expires_at = now + timedelta(days=policy.soft_suppression_days)
        reason = (
            f"{soft} soft bounces in {policy.soft_window_days:g} days ({event.provider}): "
            f"{_detail(event)}"
        )
    elif event.type is EventType.COMPLAINED:
        if policy.complaint != SUPPRESS:
            return
        reason = f"complaint ({event.feedback_type or 'abuse'}, {event.provider})"
    elif event.type is EventType.UNSUBSCRIBED:
        reason = f"unsubscribed ({event.provider})"
    else:
        return
    reason = reason[:REASON_MAX_CHARS]
    if await suppression_add(tx, [address], [reason], expires_at):
        result.suppressed.append(address)
        await email_cancel_by_address(tx, [address], f"suppressed: {reason}")
        logger.info(
            "suppressed %s: %s",
            address,
            reason,
            extra={"action": "bounce_suppressed", "email_id": match.email_id},
        )


def _detail(event: Event) -> str:
    parts = [p for p in (event.status, event.diagnostic) if p]
    return " ".join(parts) or "no detail given"


async def _check_campaign(
    tx: asyncpg.Connection, campaign_id: int, policy: BouncePolicy, now: datetime | None
) -> str | None:
    """Pause the campaign when its rates (since its breaker last tripped) pass the limits;
    the reason, or None."""
    counts = await event_campaign_counts(tx, campaign_id)
    before = await bounce_breaker_get(tx, CAMPAIGN_SCOPE, str(campaign_id))
    judged = dict(counts)
    if before is not None:
        judged = {k: counts[k] - int(before[k]) for k in counts}
    reason = policy.breach(judged["sent"], judged["hard_bounced"], judged["complained"])
    if reason is None:
        return None
    row = await campaign_db.campaign_lock(tx, campaign_id)
    if row is None or row["status"] != "active":
        return None  # paused or cancelled already
    await campaign_db.campaign_set_status(tx, campaign_id, "paused")
    held = await campaign_db.email_pause_campaign(tx, campaign_id)
    full = f"paused by the bounce breaker: {reason}"
    await bounce_breaker_trip(tx, CAMPAIGN_SCOPE, str(campaign_id), full, counts, now)
    logger.error(
        "campaign %d paused itself: %s (%d emails held; resume it when the list is cleaned)",
        campaign_id,
        reason,
        held,
        extra={"action": "campaign_bounce_paused", "campaign_id": campaign_id},
    )
    return full


async def _check_kind(
    tx: asyncpg.Connection, kind: str, policy: BouncePolicy, now: datetime
) -> str | None:
    """Trip the kind's breaker (a warning, no pause) when its rates pass the limits."""
    counts = await event_kind_counts(tx, kind, KIND_WINDOW_DAYS)
    reason = policy.breach(counts["sent"], counts["hard_bounced"], counts["complained"])
    if reason is None:
        return None
    before = await bounce_breaker_get(tx, KIND_SCOPE, kind)
    if before is not None and before["tripped_at"] > now - KIND_WARNING_EVERY:
        return None  # warned already today
    full = f"bounce breaker tripped (not paused): {reason} in the last {KIND_WINDOW_DAYS} days"
    await bounce_breaker_trip(tx, KIND_SCOPE, kind, full, counts, now)
    logger.error(
        "kind %s: %s; mailq does not pause a kind itself: `mailq pause %s` to stop it",
        kind,
        full,
        kind,
        extra={"action": "kind_bounce_breaker", "kind": kind},
    )
    return full
