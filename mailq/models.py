"""Values: the email a caller queues, the row that stores it, the email a worker claims, and
the states of SPEC.md."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson


class EmailState(enum.StrEnum):
    """The public states of an email (SPEC.md)."""

    SCHEDULED = "scheduled"
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    RETRYING = "retrying"
    FAILED = "failed"
    CANCELLED = "cancelled"
    UNKNOWN = "unknown"


# The states of an email that waits to be claimed (due now or later).
WAITING_STATES: tuple[EmailState, ...] = (
    EmailState.SCHEDULED,
    EmailState.QUEUED,
    EmailState.RETRYING,
)


class Outcome(enum.StrEnum):
    """What one attempt came to, as recorded in mailq.attempts."""

    SENT = "sent"
    RETRY = "retry"
    FAILED = "failed"
    LOST = "lost"
    # The backend failed, not the email: tried again once it is back, not counted.
    DEFERRED = "deferred"
    # Not attempted, so no attempt is recorded for these: the address is on the suppression
    # list (`cancelled`); the email's time ran out (`expired`: it ends `failed`); the worker
    # could not send it now (its lease unproven, its backend's breaker open) and hands it
    # back, due as before (`released`).
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    RELEASED = "released"


# The outcomes that write no attempt row (and give back the claim's attempt number).
NOT_ATTEMPTED = frozenset({Outcome.CANCELLED, Outcome.EXPIRED, Outcome.RELEASED})


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file sent with an email. `content_type` may carry parameters (`text/csv;
    charset=iso-8859-1`); a text type without a charset gets `charset=utf-8` (its content must
    then be UTF-8). With `content_id` the file is an inline part (an image the HTML shows as
    `<img src="cid:CONTENT_ID">`) rather than an attachment."""

    filename: str
    content_type: str
    content: bytes
    content_id: str | None = None


@dataclass(frozen=True, slots=True)
class Email:
    """One email to queue. Validated by `mailq.validation.validate_email` at enqueue."""

    to: str
    kind: str = "welcome"
    subject: str | None = None
    text: str | None = None
    html: str | None = None
    template: str | None = None
    context: Mapping[str, Any] = field(default_factory=dict)
    send_at: datetime | None = None
    priority: int | None = None
    cc: Sequence[str] = ()
    bcc: Sequence[str] = ()
    reply_to: Sequence[str] = ()
    headers: Mapping[str, str] = field(default_factory=dict)
    attachments: Sequence[Attachment] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)
    from_address: str | None = None
    max_attempts: int | None = None
    # Not handed to the server by then: not sent at all (ends `failed`, `expired`).
    expires_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class EmailRow:
    """An email as stored: the columns of mailq.emails that enqueue writes."""

    kind: str
    priority: int
    send_at: datetime | None
    max_attempts: int | None
    to_address: str
    message_id: str
    content: str
    metadata: str
    # The display name of `to` (to_address is the bare address); None when none was given.
    to_name: str | None = None
    expires_at: datetime | None = None


# The columns email_claim_due returns, in order (ClaimedEmail.from_row reads them so).
CLAIMED_COLUMNS = (
    "id",
    "kind",
    "priority",
    "attempts",
    "max_attempts",
    "to_address",
    "to_name",
    "message_id",
    "content",
    "claimed_at",
    "campaign_id",
    "suppressed",
    "expires_at",
    "first_due_at",
    "deferrals",
    "run_at",
)


# Not frozen: a frozen dataclass's __init__ sets each field through object.__setattr__,
# ~3x the cost, and one of these is made per email on the hot path; nothing mutates it.
@dataclass(slots=True)
class ClaimedEmail:
    """An email a worker holds for one attempt."""

    id: int
    kind: str
    priority: int
    attempt: int
    max_attempts: int | None
    to: str
    message_id: str
    content: Mapping[str, Any]
    claimed_at: datetime
    campaign_id: int | None = None
    # The suppression list's reason when the address was suppressed after it was queued.
    suppressed: str | None = None
    # The display name given with `to` (which is the bare address), if any.
    to_name: str | None = None
    expires_at: datetime | None = None
    # When its deadlines start: first due (send_at, else created), or an operator's retry.
    first_due_at: datetime | None = None
    # Earlier attempts that were deferred (the backend's failure): not counted.
    deferrals: int = 0

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> ClaimedEmail:
        """From a row of email_claim_due, by position (CLAIMED_COLUMNS, which the caller
        checks once per claim): ~0.6x the cost of looking each column up by name."""
        (
            id_,
            kind,
            priority,
            attempts,
            max_attempts,
            to_address,
            to_name,
            message_id,
            content,
            claimed_at,
            campaign_id,
            suppressed,
            expires_at,
            first_due_at,
            deferrals,
            _run_at,
        ) = row
        return cls(
            id_,
            kind,
            priority,
            attempts,
            max_attempts,
            to_address,
            message_id,
            orjson.loads(content),
            claimed_at,
            campaign_id,
            suppressed,
            to_name,
            expires_at,
            first_due_at,
            deferrals or 0,
        )

    @property
    def counted_attempts(self) -> int:
        """Attempts that count toward max_attempts, this one included."""
        return self.attempt - self.deferrals

    @property
    def is_last_attempt(self) -> bool:
        return self.max_attempts is not None and self.counted_attempts >= self.max_attempts


@dataclass(slots=True)  # not frozen: as ClaimedEmail
class AttemptResult:
    """The outcome of one attempt, waiting in a worker to be written with its batch."""

    email: ClaimedEmail
    outcome: Outcome
    started_at: datetime
    smtp_code: int | None = None
    smtp_reply: str | None = None
    error: str | None = None
    retry_in_s: float = 0.0
    # A permanent "no such user": put the address on the suppression list.
    suppress: bool = False
    # The ESP's id of the message (HTTP backends), which its later events name.
    provider_message_id: str | None = None
