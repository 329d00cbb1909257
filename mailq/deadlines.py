"""When an email's time is up, and what a failed attempt leads to (SPEC.md "Expiry and retry
for days").

Both deadlines count from when the email was first due (its `send_at`, else when it was
queued), or from an operator's `mailq retry`:
- expiry: `expires_at` or the kind's `expire_after`, whichever comes first. An email not
  handed to the server by then is not sent at all: it ends `failed`, `expired`.
- the end of its retries: the kind's `retry_for` (5 days by default). A transient failure
  after it ends the email `failed`, `gave up after <duration>: <the error>`.
A failure of the backend itself is `deferred`: not the email's, it costs no attempt.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from mailq.errors import BackendUnavailable, RetryLater, SendFailure
from mailq.kinds import KindPolicy
from mailq.models import ClaimedEmail, Outcome
from mailq.retry import RetryPolicy, gave_up

EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class NextStep:
    """What a failed attempt comes to: the outcome, the wait before the next attempt (0: due
    where it was), and the error recorded."""

    outcome: Outcome
    retry_in_s: float
    error: str


def expiry_of(email: ClaimedEmail, policy: KindPolicy) -> datetime | None:
    """The moment after which the email is not sent; None: it never expires."""
    ends = []
    if email.expires_at is not None:
        ends.append(email.expires_at)
    if policy.expire_after_s is not None and email.first_due_at is not None:
        ends.append(email.first_due_at + timedelta(seconds=policy.expire_after_s))
    return min(ends) if ends else None


def is_expired(email: ClaimedEmail, policy: KindPolicy, now: datetime) -> bool:
    expiry = expiry_of(email, policy)
    return expiry is not None and now >= expiry


def retry_deadline(email: ClaimedEmail, policy: KindPolicy) -> datetime | None:
    """After this a transient failure is final; None when the first due time is not known."""
    if email.first_due_at is None:
        return None
    return email.first_due_at + timedelta(seconds=policy.retry_for_s)


def after_failure(
    email: ClaimedEmail,
    policy: KindPolicy,
    failure: SendFailure,
    now: datetime,
    backoff: RetryPolicy | None = None,
) -> NextStep:
    """The outcome of an attempt that failed with `failure` at `now`."""
    reason = failure.reason
    if failure.permanent:
        return NextStep(Outcome.FAILED, 0.0, reason)
    deadline = retry_deadline(email, policy)
    if deadline is not None and now >= deadline:
        assert email.first_due_at is not None
        elapsed = (now - email.first_due_at).total_seconds()
        return NextStep(Outcome.FAILED, 0.0, gave_up(reason, elapsed))
    asked = failure.retry_after_s if isinstance(failure, RetryLater | BackendUnavailable) else None
    if isinstance(failure, BackendUnavailable):
        # Due where it was (0) unless the backend named a wait: it goes out first once the
        # backend's breaker closes.
        return NextStep(Outcome.DEFERRED, max(0.0, asked or 0.0), reason)
    if email.is_last_attempt:
        return NextStep(Outcome.FAILED, 0.0, reason)
    delay = (backoff or policy.retry).delay_s(email.counted_attempts)
    delay = max(delay, asked or 0.0)
    # The last try comes at the deadline, not an hour after it; an email that would expire
    # before its next try is due at its expiry (when it ends `expired`).
    ends = [d for d in (deadline, expiry_of(email, policy)) if d is not None]
    if ends:
        delay = min(delay, max(0.0, (min(ends) - now).total_seconds()))
    return NextStep(Outcome.RETRY, delay, reason)
