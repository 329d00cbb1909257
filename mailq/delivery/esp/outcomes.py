"""What an ESP's answer means for an email: the verdicts of the providers' error tables.

SPEC.md "ESP HTTP backends": `429` and `5xx` are transient (with the wait the provider asked
for), `401`/`403` and the provider's account-level errors are a failure of the backend (not
the email's), other documented per-message errors are permanent for that email. Each provider
module keeps a table of its documented error codes, each row a `Documented` verdict; the
status decides first, the table next, and an undocumented code falls back on its status class.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

from mailq.errors import BackendUnavailable, PermanentFailure, RetryLater, SendFailure


class Verdict(enum.Enum):
    TRANSIENT = "transient"  # RetryLater: try again after a backoff
    PERMANENT = "permanent"  # PermanentFailure: this email never succeeds
    SUPPRESS = "suppress"  # PermanentFailure, and the recipient goes on the suppression list
    BACKEND = "backend"  # BackendUnavailable: the account or the service, not the email


@dataclass(frozen=True, slots=True)
class Documented:
    """One row of a provider's error table: the verdict and the doc's meaning, shortened."""

    verdict: Verdict
    meaning: str


def status_verdict(status: int) -> Verdict | None:
    """The verdict the status alone decides (SPEC.md), or None: the provider's table does."""
    if status in (401, 403):
        return Verdict.BACKEND
    if status == 429 or status >= 500:
        return Verdict.TRANSIENT
    return None


def verdict_for(status: int, documented: Documented | None) -> Verdict:
    by_status = status_verdict(status)
    if by_status is not None:
        return by_status
    if documented is not None:
        return documented.verdict
    # Undocumented: a 4xx is about the request (this email); anything else may pass.
    return Verdict.PERMANENT if 400 <= status < 500 else Verdict.TRANSIENT


def failure(
    verdict: Verdict, reason: str, *, reply: str | None = None, retry_after_s: float | None = None
) -> SendFailure:
    """The exception a verdict means, with `reason` (provider, status, code, message)."""
    if verdict is Verdict.BACKEND:
        return BackendUnavailable(reason, smtp_reply=reply, retry_after_s=retry_after_s)
    if verdict is Verdict.TRANSIENT:
        return RetryLater(reason, smtp_reply=reply, retry_after_s=retry_after_s)
    refused = PermanentFailure(reason, smtp_reply=reply)
    refused.suppress = verdict is Verdict.SUPPRESS
    return refused


def answer_failure(
    provider: str,
    status: int,
    code: str | int | None,
    message: str,
    table: Mapping[Any, Documented],
    headers: Mapping[str, str],
) -> SendFailure:
    """The failure of a refused request: status first, then the provider's table."""
    documented = None if code is None else table.get(code)
    verdict = verdict_for(status, documented)
    named = f" {code}" if code not in (None, "", status) else ""
    text = message.strip() or (documented.meaning if documented else "no message")
    return failure(
        verdict,
        f"{provider} HTTP {status}{named}: {text}",
        reply=text,
        retry_after_s=retry_after_s(headers) if verdict is not Verdict.PERMANENT else None,
    )


def retry_after_s(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """The wait a provider asked for, in seconds: `Retry-After` (seconds or an HTTP date,
    RFC 9110 §10.2.3), else `RateLimit-Reset` / the IETF `RateLimit: ...;t=` or `reset=`
    (seconds, draft-ietf-httpapi-ratelimit-headers; Resend), else `X-RateLimit-Reset`
    (SendGrid: a Unix time; a small number is read as seconds). None when none is given."""
    now = time.time() if now is None else now
    value = headers.get("retry-after")
    if value:
        seconds = _seconds(value)
        if seconds is None:
            try:
                seconds = parsedate_to_datetime(value).timestamp() - now
            except (TypeError, ValueError):
                seconds = None
        if seconds is not None:
            return max(0.0, seconds)
    value = headers.get("ratelimit-reset")
    if value and (seconds := _seconds(value)) is not None:
        return max(0.0, seconds)
    value = headers.get("ratelimit")
    if value:
        for item in value.replace(",", ";").split(";"):
            name, _, number = item.strip().partition("=")
            if name.strip() in {"t", "reset"} and (seconds := _seconds(number)) is not None:
                return max(0.0, seconds)
    value = headers.get("x-ratelimit-reset")
    if value and (seconds := _seconds(value)) is not None:
        if seconds > 1e12:  # a Unix time in milliseconds
            seconds = seconds / 1000.0 - now
        elif seconds > 1e9:  # a Unix time in seconds
            seconds -= now
        return max(0.0, seconds)
    return None


def _seconds(value: str) -> float | None:
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if seconds == seconds and seconds != float("inf") else None
