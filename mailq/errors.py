"""The errors mailq raises. Each message says what is wrong and what to do about it."""

from __future__ import annotations


class MailqError(Exception):
    """Base class of every error mailq raises on purpose."""


# An error message quotes a value at most this long (a 4 MB address is not echoed back).
QUOTED_CHARS = 80
MAX_MESSAGE_CHARS = 1000


def quoted(value: object, limit: int = QUOTED_CHARS) -> str:
    """`repr(value)` for an error message, cut to about `limit` characters."""
    if isinstance(value, str) and len(value) > limit:
        return f"{value[: limit - 20]!r}...({len(value):,} characters)"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class InvalidEmail(MailqError):
    """An email cannot be queued as given; the message names the field. Nothing was written.
    The message is at most MAX_MESSAGE_CHARS long, whatever it quotes."""

    def __init__(self, message: str = "") -> None:
        if len(message) > MAX_MESSAGE_CHARS:
            message = message[: MAX_MESSAGE_CHARS - 3] + "..."
        super().__init__(message)


class ConfigError(MailqError):
    """A setting or the config file is wrong; the message names the setting."""


class DatabaseUnavailable(MailqError):
    """The queue's database cannot be reached (or the connection was lost): try again."""


class DatabaseError(MailqError):
    """The database refused one of mailq's statements for a reason other than a lost
    connection (the message has the database's own words)."""


class SchemaMismatch(MailqError):
    """The database schema is older or newer than this mailq knows: run `mailq migrate`."""


class EmailNotFound(MailqError):
    """No email has that id."""


class CampaignNotFound(MailqError):
    """No campaign has that id."""


class CampaignClosed(MailqError):
    """The campaign was cancelled: it takes no more recipients and cannot be resumed."""


class InvalidToken(MailqError):
    """An unsubscribe token is malformed or its signature does not match."""


class BackendError(MailqError):
    """The MAILQ_BACKEND URL is malformed or names an unknown scheme."""


class SendFailure(MailqError):
    """Sending one email failed. `permanent` tells whether trying again can help."""

    def __init__(
        self,
        reason: str,
        *,
        permanent: bool,
        smtp_code: int | None = None,
        smtp_reply: str | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent
        self.smtp_code = smtp_code
        self.smtp_reply = smtp_reply
        # The recipient does not exist: add it to the suppression list (mailq.replies).
        self.suppress = False


class RetryLater(SendFailure):
    """A transient failure (SMTP 4xx, connection trouble, HTTP 429/5xx): try again after a
    backoff. `retry_after_s` is the wait the server asked for (HTTP Retry-After or rate-limit
    headers), when it named one."""

    def __init__(
        self,
        reason: str,
        *,
        smtp_code: int | None = None,
        smtp_reply: str | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(reason, permanent=False, smtp_code=smtp_code, smtp_reply=smtp_reply)
        self.retry_after_s = retry_after_s


class BackendUnavailable(SendFailure):
    """The backend itself failed, not the email: it cannot be reached, refuses the
    credentials (HTTP 401/403) or the account may not send (e.g. SES SendingPausedException,
    Postmark's account error codes). The email is not at fault and is tried again once the
    backend is back: its attempt is `deferred` and does not count toward `max_attempts`, and
    the backend's circuit breaker (SPEC.md "Expiry and retry for days") opens on it."""

    def __init__(
        self,
        reason: str,
        *,
        smtp_code: int | None = None,
        smtp_reply: str | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(reason, permanent=False, smtp_code=smtp_code, smtp_reply=smtp_reply)
        self.retry_after_s = retry_after_s


class NotSent(SendFailure):
    """The worker did not hand the email to the backend and gives it back, due where it was:
    it could not prove that it still holds the email (its lease unconfirmed: cut off from the
    database, or frozen past the lease), or the backend's circuit breaker is open. No attempt
    is counted or recorded."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, permanent=False)


class PermanentFailure(SendFailure):
    """A permanent failure (SMTP 5xx, an email that cannot be built): never try again."""

    def __init__(
        self, reason: str, *, smtp_code: int | None = None, smtp_reply: str | None = None
    ) -> None:
        super().__init__(reason, permanent=True, smtp_code=smtp_code, smtp_reply=smtp_reply)


class UsageError(MailqError):
    """A command or call was given something it cannot use (a malformed id, kind or time)."""


class NotAllowed(MailqError):
    """The email is not in a state that allows this (e.g. retrying a sent email); nothing
    was changed."""
