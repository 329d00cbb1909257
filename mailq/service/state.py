"""What every request handler can reach: the pool, settings, tokens and limits of the
service, opened by the lifespan in app.py."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import cast

import asyncpg
from starlette.requests import Request

from mailq.bounces.webhooks import Webhook
from mailq.config import Config
from mailq.service.auth import Tokens
from mailq.service.embedded import EmbeddedWorker
from mailq.service.metrics import Metrics
from mailq.settings import BATCH_LIMIT, HTTP_BODY_LIMIT_BYTES, IDEMPOTENCY_KEY_HOURS, Settings

# Connections each service process holds for HTTP requests (the embedded worker has its own
# few plus one LISTEN connection; docs/connections.md adds them up).
HTTP_POOL_SIZE = 4
# Decoded attachment bytes one email may carry; the base64 of this fits the body limit.
ATTACHMENTS_LIMIT_BYTES = 7 * 1024 * 1024
MAX_ID = 2**63 - 1


@dataclass(frozen=True, slots=True)
class Limits:
    body_bytes: int = HTTP_BODY_LIMIT_BYTES
    batch_emails: int = BATCH_LIMIT
    attachments_bytes: int = ATTACHMENTS_LIMIT_BYTES
    idempotency_hours: float = IDEMPOTENCY_KEY_HOURS
    pool_size: int = HTTP_POOL_SIZE


@dataclass(frozen=True, slots=True)
class Service:
    settings: Settings
    limits: Limits
    pool: asyncpg.Pool
    tokens: Tokens
    metrics: Metrics
    worker: EmbeddedWorker | None
    # MAILQ_CONFIG: the kinds and named templates requests may use.
    config: Config
    # Signs and checks unsubscribe tokens: the key the workers sign with.
    secret_key: bytes
    # The provider webhooks MAILQ_CONFIG configures ([webhooks.<provider>]), built once per
    # process (SNS certificates are cached in them).
    webhooks: Mapping[str, Webhook] = field(default_factory=dict)


def service_of(request: Request) -> Service:
    return cast(Service, request.state.service)
