"""Provider webhooks: one module per provider, each verifying its provider's own scheme and
mapping the payload to `mailq.bounces.events.Event` values.

`webhook_from_config(provider, section)` builds the one for `[webhooks.<provider>]`; the route
answers 404 for a provider without a section, 401 on `WebhookRejected`, 503 on
`WebhookUnavailable`, 400 on `InvalidPayload`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from mailq.bounces.webhooks.common import Webhook
from mailq.bounces.webhooks.mailgun import MailgunWebhook
from mailq.bounces.webhooks.postmark import PostmarkWebhook
from mailq.bounces.webhooks.resend import ResendWebhook
from mailq.bounces.webhooks.sendgrid import SendgridWebhook
from mailq.bounces.webhooks.ses import SesWebhook
from mailq.errors import ConfigError

PROVIDERS: Mapping[str, Callable[[Mapping[str, object]], Webhook]] = {
    "ses": SesWebhook.from_section,
    "postmark": PostmarkWebhook.from_section,
    "mailgun": MailgunWebhook.from_section,
    "sendgrid": SendgridWebhook.from_section,
    "resend": ResendWebhook.from_section,
}


def webhook_from_config(provider: str, section: Mapping[str, object]) -> Webhook:
    """The webhook of `provider` configured by its `[webhooks.<provider>]` section."""
    build = PROVIDERS.get(provider)
    if build is None:
        raise ConfigError(
            f"[webhooks.{provider}]: unknown provider (known: {', '.join(PROVIDERS)})"
        )
    return build(section)


__all__ = [
    "PROVIDERS",
    "MailgunWebhook",
    "PostmarkWebhook",
    "ResendWebhook",
    "SendgridWebhook",
    "SesWebhook",
    "Webhook",
    "webhook_from_config",
]
