"""Inline subject, text and HTML are Jinja2 templates, rendered in a sandbox.

A template that uses a variable its context lacks is refused when the email is queued, by
reading the template's variables (cheap, cached per template text) rather than rendering it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateError, meta
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import escape

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


# Templates that are only text and `{{ name }}` (most subjects and bodies) are rendered
# without Jinja: Jinja's render sets up a new Context per call, which cost about 8-11 us per
# template here, as much as the rest of building a message. The result is the same as
# Jinja's (tests/unit/test_templates_fast_path.py compares them): newlines normalised to \n, one
# trailing newline dropped, str() of the value, HTML-escaped with autoescape.
_SIMPLE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_NEWLINE = re.compile(r"\r\n|\r|\n")
# Names that Jinja reads as literals or operators, never as context variables.
_JINJA_WORDS = frozenset(
    ["true", "false", "none", "True", "False", "None", "and", "or", "not", "in", "is", "if", "else"]
)


@lru_cache(maxsize=_TEMPLATE_CACHE)
def _simple_parts(source: str) -> tuple[str, ...] | None:
    """Literal text and variable names, alternating (text first); None when the template
    uses anything beyond plain `{{ name }}`."""
    lines = _NEWLINE.split(source)
    if lines[-1] == "":
        del lines[-1]
    text = "\n".join(lines)
    parts = _SIMPLE.split(text)
    literals, names = parts[::2], parts[1::2]
    if any(("{{" in t or "{%" in t or "{#" in t) for t in literals):
        return None
    if any(name in _JINJA_WORDS for name in names):
        return None
    return tuple(parts)


def _render_simple(parts: tuple[str, ...], context: Mapping[str, Any], html: bool) -> str | None:
    out = []
    for index, part in enumerate(parts):
        if index % 2 == 0:
            out.append(part)
        elif part in context:
            value = context[part]
            out.append(escape(value) if html else str(value))
        else:
            return None  # Jinja raises the error about the missing variable
    return "".join(out)


def render(source: str, context: Mapping[str, Any], *, html: bool) -> str:
    """Render at send time; a failure fails the email permanently (no half-empty message)."""
    if "{" not in source:
        return source
    parts = _simple_parts(source)
    if parts is not None:
        rendered = _render_simple(parts, context, html)
        if rendered is not None:
            return rendered
    try:
        return _compiled(source, html).render(context)
    except TemplateError as exc:
        raise PermanentFailure(f"template rendering failed: {exc}") from None
