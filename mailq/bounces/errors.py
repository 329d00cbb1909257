"""The errors of mailq.bounces. The HTTP routes map them: a `WebhookRejected` → 401 (nothing
recorded), `WebhookUnavailable` → 503 (the provider retries), `InvalidPayload` → 400."""

from __future__ import annotations

from mailq.errors import MailqError


class BounceError(MailqError):
    """Base class of the errors about bounces, complaints and webhooks."""


class VerpError(BounceError):
    """A VERP envelope address could not be read."""


class NotVerpAddress(VerpError):
    """The address is not a VERP address of the bounce domain (`b-<token>@MAILQ_BOUNCE_DOMAIN`)."""


class ForgedVerpToken(VerpError):
    """The VERP token is malformed or its signature matches none of the MAILQ_SECRET_KEY keys:
    it was not made by this mailq (or the key that made it was removed)."""


class WebhookError(BounceError):
    """A webhook request could not be used."""


class WebhookRejected(WebhookError):
    """The request failed its provider's verification: answer 401 and record nothing."""


class MalformedWebhook(WebhookRejected):
    """The request lacks what verification needs (a header, a JSON field), so it cannot be
    verified."""


class BadSignature(WebhookRejected):
    """The request's signature does not match its body with the configured key."""


class BadCredentials(WebhookRejected):
    """The request's basic-auth credentials are missing or wrong."""


class StaleTimestamp(WebhookRejected):
    """The request's signed timestamp is outside the allowed window (a replay, or a wrong
    clock)."""


class ReplayedWebhook(WebhookRejected):
    """The request reuses a one-time token already seen within the replay window."""


class TopicNotAllowed(WebhookRejected):
    """The SNS message comes from a topic that `[webhooks.ses] topics` does not list."""


class UntrustedCertificateUrl(WebhookRejected):
    """The SNS SigningCertURL (or SubscribeURL) is not an https URL of the topic region's
    SNS host, `sns.<region>.amazonaws.com[.cn]`."""


class WebhookUnavailable(WebhookError):
    """Something the verification needs could not be fetched (the SNS signing certificate):
    answer 503 so the provider tries again."""


class InvalidPayload(WebhookError):
    """The request was verified but its body is not the provider's JSON."""
