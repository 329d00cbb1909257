"""The dashboard: `GET /dashboard` on the service (SPEC.md, "Dashboard").

Server-rendered pages (Jinja2, autoescaped) with one small script of our own for the live
overview, the tick-all boxes and the CSV file picker; every asset is served from this
package (static/), nothing from elsewhere. `routes()` is what the app mounts.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from mailq.service import api  # noqa: F401  (registers the {id:id} path convertor)
from mailq.service.dashboard import (
    campaigns,
    emails,
    failures,
    live,
    login,
    overview,
    queue,
    suppressions,
    unknown,
)
from mailq.service.metrics import ROUTE_KEY

STATIC = Path(__file__).parent / "static"
PREFIX = "/dashboard"


def _labelled(path: str, endpoint: Callable[[Request], Awaitable[Response]]) -> Callable[..., Any]:
    """Label the request for the metrics by its route, like the API's routes."""

    async def handle(request: Request) -> Response:
        request.scope[ROUTE_KEY] = path
        return await endpoint(request)

    handle.__name__ = getattr(endpoint, "__name__", "dashboard")
    return handle


def routes() -> list[BaseRoute]:
    table: list[tuple[str, Callable[[Request], Awaitable[Response]], str]] = [
        ("", overview.overview, "GET"),
        ("/live", live.events, "GET"),
        ("/live.json", overview.live_json, "GET"),
        ("/login", login.login_form, "GET"),
        ("/login", login.login, "POST"),
        ("/logout", login.logout, "POST"),
        ("/emails", emails.emails, "GET"),
        ("/emails/bulk", emails.bulk, "POST"),
        ("/emails/{id:id}", emails.email, "GET"),
        ("/emails/{id:id}/preview", emails.preview, "GET"),
        ("/emails/{id:id}/{verb}", emails.email_action, "POST"),
        ("/failures", failures.failures, "GET"),
        ("/failures/group", failures.group_action, "POST"),
        ("/campaigns", campaigns.campaigns, "GET"),
        ("/campaigns/{id:id}", campaigns.campaign, "GET"),
        ("/campaigns/{id:id}/{verb}", campaigns.campaign_action, "POST"),
        ("/kinds", queue.kinds, "GET"),
        ("/kinds/{kind}/{verb}", queue.kind_action, "POST"),
        ("/workers", queue.workers, "GET"),
        ("/suppressions", suppressions.suppressions, "GET"),
        ("/suppressions/add", suppressions.add, "POST"),
        ("/suppressions/remove", suppressions.remove, "POST"),
        ("/suppressions/import", suppressions.import_csv, "POST"),
        ("/unknown", unknown.unknown, "GET"),
        ("/unknown/bulk", unknown.bulk, "POST"),
    ]
    mounted: list[BaseRoute] = [
        Route(PREFIX + path, _labelled(PREFIX + path, endpoint), methods=[method])
        for path, endpoint, method in table
    ]
    mounted.append(Mount(PREFIX + "/static", app=StaticFiles(directory=STATIC), name="static"))
    return mounted


__all__ = ["routes"]
