"""Pages: the Jinja2 environment (autoescaped), the filters the templates format numbers and
times with, and the security headers every dashboard answer carries."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
from starlette.responses import HTMLResponse

from mailq.service.dashboard.deliverability import percent as rate

HERE = Path(__file__).parent
NONE = "\N{EN DASH}"  # what a table shows for "no value"
# Our own script and style only; no inline script, no remote anything. The email preview
# is a frame of its own with a stricter policy (emails.py).
PAGE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": PAGE_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def number(value: Any) -> str:
    if value is None:
        return NONE
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.1f}"
    return f"{int(value):,}"


def duration(seconds: Any) -> str:
    """A short human duration: 42 s, 3 min, 2 h 5 min, 3 d 4 h."""
    if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
        return NONE
    s = max(0, int(seconds))
    if s < 90:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"


def when(value: datetime | None) -> str:
    if value is None:
        return NONE
    if value.year >= 9999:
        return "held (paused)"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def ago(value: datetime | None) -> str:
    if value is None:
        return NONE
    return duration((datetime.now(UTC) - value).total_seconds()) + " ago"


def iso(value: datetime | None) -> str:
    return "" if value is None else value.astimezone(UTC).isoformat()


def percent(part: Any, whole: Any) -> str:
    if not whole:
        return NONE
    return f"{100.0 * float(part) / float(whole):.1f}%"


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(number=number, duration=duration, when=when, iso=iso, ago=ago, rate=rate)
    env.globals.update(percent=percent)
    return env


ENVIRONMENT = _environment()


def render(template: str, context: Mapping[str, Any]) -> str:
    return ENVIRONMENT.get_template(template).render(context)


def html(
    template: str,
    context: Mapping[str, Any],
    status: int = 200,
    headers: Mapping[str, str] | None = None,
) -> HTMLResponse:
    return HTMLResponse(
        render(template, context), status_code=status, headers={**PAGE_HEADERS, **(headers or {})}
    )
