"""mailq: a Postgres-native email queue."""

from __future__ import annotations

# First: a worker process catches SIGTERM from here on (see mailq.startup).
from mailq import startup  # noqa: F401  # isort: skip
from mailq.enqueue import enqueue, enqueue_sync
from mailq.errors import (
    CampaignClosed,
    CampaignNotFound,
    ConfigError,
    DatabaseUnavailable,
    EmailNotFound,
    InvalidEmail,
    InvalidToken,
    MailqError,
    PermanentFailure,
    RetryLater,
    SchemaMismatch,
)
from mailq.models import Attachment, Email, EmailState
from mailq.settings import Settings

__all__ = [
    "Attachment",
    "CampaignClosed",
    "CampaignNotFound",
    "ConfigError",
    "DatabaseUnavailable",
    "Email",
    "EmailNotFound",
    "EmailState",
    "InvalidEmail",
    "InvalidToken",
    "MailqError",
    "PermanentFailure",
    "RetryLater",
    "SchemaMismatch",
    "Settings",
    "enqueue",
    "enqueue_sync",
]
__version__ = "0.1.0"
