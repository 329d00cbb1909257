"""Campaigns: one email per recipient, sent when the campaign's time comes.

A campaign stores its content (subject, text, html or a template, shared context) once
(campaign); each recipient becomes an email of the campaign's kind that stores only the
recipient's context, checked and inserted in bulk from any iterator (recipients, which also
reads them from a CSV). Pause, resume and cancel change what the campaign has not yet sent
(status). Progress by public state comes from the `mailq.campaign_progress` view.

Every function takes an asyncpg connection (or pool, for the read-only ones); changes run
in one transaction (a savepoint of the caller's when one is open): all or nothing.
"""

from __future__ import annotations

from mailq.campaigns.campaign import (
    NAME_MAX_CHARS,
    Campaign,
    NewCampaign,
    create_campaign,
    get_campaign,
    list_campaigns,
)
from mailq.campaigns.recipients import (
    Added,
    Recipient,
    Recipients,
    add_recipients,
    recipients_from_csv,
)
from mailq.campaigns.status import (
    CANCEL_REASON,
    cancel_campaign,
    pause_campaign,
    resume_campaign,
)

__all__ = [
    "CANCEL_REASON",
    "NAME_MAX_CHARS",
    "Added",
    "Campaign",
    "NewCampaign",
    "Recipient",
    "Recipients",
    "add_recipients",
    "cancel_campaign",
    "create_campaign",
    "get_campaign",
    "list_campaigns",
    "pause_campaign",
    "recipients_from_csv",
    "resume_campaign",
]
