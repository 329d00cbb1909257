"""Provider webhooks: `POST /v1/webhooks/{ses,postmark,mailgun,sendgrid,resend}` (no bearer
token: each request is verified by its provider's own scheme, mailq.bounces.webhooks).

A provider without its `[webhooks.<provider>]` section in MAILQ_CONFIG answers 404; a request
that fails verification 401 and nothing is recorded; a certificate that cannot be fetched
(SNS) 503, so the provider tries again; a verified body that is not the provider's JSON 400.
The events are recorded by mailq.bounces.recorder: the same event delivered twice (a
provider's retry) is recorded once, so every retry may be answered 200.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mailq.bounces.errors import InvalidPayload, WebhookRejected, WebhookUnavailable
from mailq.bounces.recorder import BounceRules, record_events
from mailq.bounces.webhooks import PROVIDERS, MailgunWebhook, Webhook, webhook_from_config
from mailq.config import Config
from mailq.service.api import Handler, Role, Router
from mailq.service.body import read_body
from mailq.service.errors import ApiError
from mailq.service.openapi import ERROR_REF, errors
from mailq.service.state import service_of

logger = logging.getLogger(__name__)

router = Router("webhooks")

RECEIVED: dict[str, Any] = {
    "type": "object",
    "required": ["events", "recorded", "duplicates"],
    "properties": {
        "events": {"type": "integer"},
        "recorded": {"type": "integer"},
        "duplicates": {"type": "integer"},
    },
}
_BODY: dict[str, Any] = {"type": "object", "description": "the provider's own payload (JSON)"}
# SendGrid posts a batch: an array of events.
_BATCH: dict[str, Any] = {
    "type": "array",
    "items": {"type": "object"},
    "description": "the provider's own payload (JSON)",
}


class _EventsAreDeduplicated:
    """Mailgun's replay guard in the service: none. mailq.events keeps each event once (by
    Mailgun's event id), so a replayed request changes nothing, while refusing a token seen
    before would lose the events of a delivery whose first try failed (a 503) and that
    Mailgun retries with the same signature."""

    def seen(self, token: str, *, expires_at: float) -> bool:
        return False


def webhooks_from_config(config: Config) -> dict[str, Webhook]:
    """The webhook of every provider MAILQ_CONFIG has a section for; ConfigError for a bad
    section."""
    built: dict[str, Webhook] = {}
    for provider, section in config.webhooks.items():
        if provider == "mailgun":
            built[provider] = MailgunWebhook.from_section(
                section, replay_guard=_EventsAreDeduplicated()
            )
        else:
            built[provider] = webhook_from_config(provider, section)
    return built


async def close_webhooks(webhooks: Mapping[str, Webhook]) -> None:
    for webhook in webhooks.values():
        close = getattr(webhook, "aclose", None)
        if close is not None:
            await close()


def _endpoint(provider: str) -> Handler:
    async def receive(request: Request) -> Response:
        service = service_of(request)
        webhook = service.webhooks.get(provider)
        if webhook is None:
            raise ApiError(404, f"no [webhooks.{provider}] section in MAILQ_CONFIG")
        body = await read_body(request, service.limits.body_bytes)
        try:
            events = await webhook.receive(request.headers, body)
        except WebhookRejected as exc:
            logger.warning(
                "%s webhook refused: %s",
                provider,
                exc,
                extra={"action": "webhook_refused", "provider": provider},
            )
            raise ApiError(401, f"{provider} webhook: {exc}") from None
        except WebhookUnavailable as exc:
            raise ApiError(503, f"{provider} webhook: {exc}") from None
        except InvalidPayload as exc:
            raise ApiError(400, f"{provider} webhook: {exc}") from None
        config = service.config
        recorded = await record_events(
            service.pool, events, BounceRules(config.bounces, config.kind_bounces)
        )
        return JSONResponse(
            {
                "events": len(events),
                "recorded": recorded.recorded,
                "duplicates": recorded.duplicates,
            }
        )

    receive.__name__ = f"webhook_{provider}"
    return receive


for _provider in PROVIDERS:
    router.route(
        "POST",
        f"/v1/webhooks/{_provider}",
        role=Role.PUBLIC,
        summary=f"Delivery events from {_provider} (verified by the provider's own scheme)",
        body=_BATCH if _provider == "sendgrid" else _BODY,
        responses={
            200: ("the events, recorded once each", RECEIVED),
            **errors(400, 413, 503),
            401: ("the request failed the provider's verification; nothing recorded", ERROR_REF),
            404: (f"MAILQ_CONFIG has no [webhooks.{_provider}] section", ERROR_REF),
        },
    )(_endpoint(_provider))
