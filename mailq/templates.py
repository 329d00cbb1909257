"""Inline subject, text and HTML are Jinja2 templates, rendered in a sandbox.

A template that uses a variable its context lacks is refused when the email is queued, by
reading the template's variables (cheap, cached per template text) rather than rendering it.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateError, meta
from jinja2.sandbox import SandboxedEnvironment

from mailq.errors import InvalidEmail, PermanentFailure

_TEXT_ENV = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
_HTML_ENV = SandboxedEnvironment(undefined=StrictUndefined, autoescape=True)
_TEMPLATE_CACHE = 4096


@lru_cache(maxsize=_TEMPLATE_CACHE)
def variables_of(source: str) -> frozenset[str]:
    """The context variables a template reads; raises InvalidEmail on a syntax error."""
    if "{" not in source:
        return frozenset()
    try:
        return frozenset(meta.find_undeclared_variables(_TEXT_ENV.parse(source)))
    except TemplateError as exc:
        raise InvalidEmail(f"template syntax error: {exc}") from None


def check_context(field: str, source: str, context: Mapping[str, Any]) -> None:
    missing = sorted(variables_of(source) - context.keys())
    if missing:
        raise InvalidEmail(
            f"{field}: the template uses {', '.join(missing)}, which the context lacks"
        )


@lru_cache(maxsize=_TEMPLATE_CACHE)
def _compiled(source: str, html: bool) -> Template:
    return (_HTML_ENV if html else _TEXT_ENV).from_string(source)


def render(source: str, context: Mapping[str, Any], *, html: bool) -> str:
    """Render at send time; a failure fails the email permanently (no half-empty message)."""
    if "{" not in source:
        return source
    try:
        return _compiled(source, html).render(context)
    except TemplateError as exc:
        raise PermanentFailure(f"template rendering failed: {exc}") from None
