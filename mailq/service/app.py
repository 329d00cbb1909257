"""The HTTP service: `uvicorn mailq.service.app:app --workers 4` (or `mailq serve`).

`create_app(settings)` builds the app; the module-level `app` builds it from the environment
on first use (in each process, never at import). The lifespan of each process opens its
connection pool, checks the schema (refusing to start on one it does not know), loads the
tokens and, unless MAILQ_EMBEDDED_WORKER=0, runs a worker beside the HTTP handlers; on
shutdown the worker finishes what it is sending and the pool closes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import asyncpg
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from mailq import __version__, logs
from mailq.bounces.webhooks import Webhook
from mailq.compose.unsubscribe import load_secret_key
from mailq.config import DEFAULT_CONFIG, Config, load_settings
from mailq.db import embedded
from mailq.db.connection import (
    DATABASE_ERRORS,
    IDEMPOTENCY_PRUNE_LOCK_KEY,
    open_pool,
    schema_try_duty_lock,
)
from mailq.db.idempotency_keys import idempotency_key_delete_expired
from mailq.db.schema import ensure_current
from mailq.errors import ConfigError
from mailq.service.api import Handler, Operation, Router
from mailq.service.auth import authorize, load_tokens
from mailq.service.dashboard import routes as dashboard_routes
from mailq.service.dashboard import timing
from mailq.service.embedded import EmbeddedWorker, SenderFactory, default_sender
from mailq.service.errors import EXCEPTION_HANDLERS, RetryAfterOn503
from mailq.service.metrics import ROUTE_KEY, Metrics, MetricsMiddleware, metrics
from mailq.service.openapi import document
from mailq.service.routes import campaigns as routes_campaigns
from mailq.service.routes import emails as routes_emails
from mailq.service.routes import events as routes_events
from mailq.service.routes import health as routes_health
from mailq.service.routes import kinds as routes_kinds
from mailq.service.routes import queue as routes_queue
from mailq.service.routes import suppressions as routes_suppressions
from mailq.service.routes import unsubscribe as routes_unsubscribe
from mailq.service.routes import webhooks as routes_webhooks
from mailq.service.state import Limits, Service, service_of
from mailq.settings import Settings

logger = logging.getLogger(__name__)

# Each area of the API is one router, in a module of its own.
ROUTERS: tuple[Router, ...] = (
    routes_emails.router,
    routes_events.router,
    routes_campaigns.router,
    routes_suppressions.router,
    routes_kinds.router,
    routes_unsubscribe.router,
    routes_webhooks.router,
    routes_queue.router,
    routes_health.router,
)
COMMAND_TIMEOUT_S = 60.0
POOL_CLOSE_TIMEOUT_S = 10.0
IDEMPOTENCY_PRUNE_INTERVAL_S = 600.0
IDEMPOTENCY_PRUNE_BATCH = 5000


def _guarded(op: Operation) -> Handler:
    """The endpoint Starlette calls: labels the request for metrics, checks the token."""

    async def endpoint(request: Request) -> Response:
        request.scope[ROUTE_KEY] = op.path
        request.state.principal = authorize(request, service_of(request).tokens, op.role)
        return await op.handler(request)

    endpoint.__name__ = op.handler.__name__
    return endpoint


def _routes(operations: Sequence[Operation]) -> list[Route]:
    """One Route per path with every method of that path, so that Starlette answers a method
    the path lacks (OPTIONS too) with 405 and an `Allow` that lists all the path's methods."""
    by_path: dict[str, dict[str, Handler]] = {}
    for op in operations:
        by_path.setdefault(op.path, {})[op.method] = _guarded(op)
    routes = []
    for path, handlers in by_path.items():

        async def endpoint(request: Request, handlers: dict[str, Handler] = handlers) -> Response:
            method = "GET" if request.method == "HEAD" else request.method
            return await handlers[method](request)

        routes.append(Route(path, endpoint, methods=list(handlers)))
    return routes


async def _open_pool(settings: Settings, limits: Limits) -> asyncpg.Pool:
    if not settings.database_url:
        raise ConfigError("the service has no database URL")
    return await open_pool(
        settings.database_url,
        max_size=limits.pool_size,
        command_timeout=COMMAND_TIMEOUT_S,
        init=timing.install,
    )


async def _prune_idempotency_keys(pool: asyncpg.Pool, keep_hours: float) -> None:
    """Forget Idempotency-Keys past their retention; one process at a time does it."""
    while True:
        await asyncio.sleep(IDEMPOTENCY_PRUNE_INTERVAL_S)
        try:
            async with pool.acquire() as conn, conn.transaction():
                lock = IDEMPOTENCY_PRUNE_LOCK_KEY
                if await schema_try_duty_lock(conn, lock):
                    await idempotency_key_delete_expired(conn, keep_hours, IDEMPOTENCY_PRUNE_BATCH)
        except DATABASE_ERRORS as exc:
            logger.warning("pruning idempotency keys failed: %s", exc)


def create_app(
    configured: Settings,
    *,
    config: Config = DEFAULT_CONFIG,
    limits: Limits | None = None,
    make_sender: SenderFactory | None = None,
    routers: Sequence[Router] = ROUTERS,
    configure_logging: bool = False,
    webhooks: Mapping[str, Webhook] | None = None,
) -> Starlette:
    """The app of `configured` settings and `config` (MAILQ_CONFIG: the kinds and named
    templates requests may use, the limits, and what the embedded worker needs).
    `webhooks` replaces the ones `[webhooks.*]` configures (tests: an SNS certificate served
    from loopback)."""
    limits = limits or Limits(body_bytes=config.body_limit_bytes, batch_emails=config.batch_limit)
    if make_sender is None:
        make_sender = partial(default_sender, quirks=config.quirks)
    process_metrics = metrics(home=configured.home)
    operations = [op for router in routers for op in router.operations]

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[dict[str, Any]]:
        if configure_logging:
            logs.configure()
        running = _running(configured, config, limits, make_sender, process_metrics, webhooks)
        async with running as service:
            yield {"service": service}

    app = Starlette(
        routes=_routes(operations) + dashboard_routes(),
        lifespan=lifespan,
        exception_handlers=EXCEPTION_HANDLERS,
        middleware=[
            Middleware(MetricsMiddleware, metrics=process_metrics),
            Middleware(RetryAfterOn503),
        ],
    )
    app.state.openapi = document(operations, __version__, kinds=config.kinds)
    return app


@asynccontextmanager
async def _running(
    configured: Settings,
    config: Config,
    limits: Limits,
    make_sender: SenderFactory,
    process_metrics: Metrics,
    webhooks: Mapping[str, Webhook] | None = None,
) -> AsyncIterator[Service]:
    """One process of the service from start to shutdown: the pool, the schema check, the
    tokens and key, the embedded worker and the idempotency janitor."""
    # No MAILQ_DATABASE_URL: the embedded PostgreSQL under MAILQ_HOME (with a warning).
    settings = (
        configured
        if configured.database_url
        else await asyncio.to_thread(embedded.resolve, configured)
    )
    tokens = load_tokens(settings)
    secret_key = load_secret_key(settings)
    hooks = dict(webhooks) if webhooks is not None else routes_webhooks.webhooks_from_config(config)
    pool = await _open_pool(settings, limits)
    worker: EmbeddedWorker | None = None
    janitor: asyncio.Task[None] | None = None
    try:
        await ensure_current(pool)
        if settings.embedded_worker:
            worker = EmbeddedWorker(
                settings,
                make_sender=make_sender,
                observer=process_metrics.observe_attempt,
                config=config,
            )
            worker.start()
        janitor = asyncio.create_task(
            _prune_idempotency_keys(pool, limits.idempotency_hours), name="mailq-janitor"
        )
        logger.info(
            "service started",
            extra={"action": "service_started", "embedded_worker": worker is not None},
        )
        yield Service(
            settings, limits, pool, tokens, process_metrics, worker, config, secret_key, hooks
        )
    finally:
        await routes_webhooks.close_webhooks(hooks)
        if worker is not None:
            await worker.stop()
        if janitor is not None:
            janitor.cancel()
            await asyncio.gather(janitor, return_exceptions=True)
        try:
            await asyncio.wait_for(pool.close(), POOL_CLOSE_TIMEOUT_S)
        except TimeoutError:
            pool.terminate()


def app_from_environment() -> Starlette:
    """The app of this process's environment. The edge of the process: the only place the
    service reads MAILQ_* variables and the MAILQ_CONFIG file."""
    settings, config = load_settings()
    return create_app(settings, config=config, configure_logging=True)


class EnvironmentApp:
    """The module-level `app`: built by app_from_environment() on its first call, in the
    process that serves it, never at import. `uvicorn mailq.service.app:app --workers 4` so
    builds one app in each of its processes, and importing this module reads nothing."""

    def __init__(self) -> None:
        self._app: Starlette | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._app is None:
            try:
                self._app = app_from_environment()
            except Exception as exc:
                if scope["type"] != "lifespan":
                    raise
                # Fail the start (uvicorn exits): under lifespan "auto" an exception here
                # would read as "no lifespan support" and the service would serve on.
                await receive()
                await send({"type": "lifespan.startup.failed", "message": str(exc)})
                return
        await self._app(scope, receive, send)


app = EnvironmentApp()

__all__ = ["EnvironmentApp", "Limits", "app", "app_from_environment", "create_app"]
