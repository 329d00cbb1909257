"""The fast path for plain `{{ name }}` templates renders exactly what Jinja renders."""

from __future__ import annotations

from typing import Any

import pytest

from mailq.compose import templates
from mailq.errors import PermanentFailure

SOURCES = [
    "Welcome, {{ name }}",
    "{{name}}",
    "{{  name\t}} and {{ other }}!",
    "Hello {{ name }},\n\nline two\n",
    "Hello {{ name }}\r\nwindows\r\n\r\n",
    "old mac {{ name }}\rline\r",
    "no trailing newline {{ name }}",
    "{{ name }}\n\n\n",
    "<p>{{ name }}</p> & {{ other }}",
    "braces { alone } and }} {{ name }}",
    # Beyond the fast path: Jinja renders these.
    "{{ name | upper }}",
    "{{- name }} x",
    "{% if name %}yes{% endif %} {{ name }}",
    "{# note #}{{ name }}",
    "{{ none }} {{ true }} {{ name }}",
    "{{ range }}",
    "{{ name.x }}",
]
CONTEXTS: list[dict[str, Any]] = [
    {"name": "Ada", "other": "B"},
    {"name": "<b>&'\"</b>", "other": "é ü 😀"},
    {"name": None, "other": True},
    {"name": 1.5, "other": 3},
    {"name": [1, "<a>"], "other": {"k": "v"}},
    {"name": "x", "other": "y", "none": "shadow?", "true": 1, "range": "mine"},
]


def _jinja(source: str, context: dict[str, Any], html: bool) -> str:
    return templates._compiled(source, html).render(context)


@pytest.mark.parametrize("html", [False, True])
@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("context", CONTEXTS)
def test_render_matches_jinja(source: str, context: dict[str, Any], html: bool) -> None:
    try:
        expected: str | type[Exception] = _jinja(source, context, html)
    except Exception:
        expected = PermanentFailure
    if expected is PermanentFailure:
        with pytest.raises(PermanentFailure):
            templates.render(source, context, html=html)
    else:
        assert templates.render(source, context, html=html) == expected


def test_simple_templates_take_the_fast_path() -> None:
    assert templates._simple_parts("Hi {{ name }}!\n") == ("Hi ", "name", "!")
    assert templates._simple_parts("{{ name | upper }}") is None
    assert templates._simple_parts("{{ none }}") is None


def test_a_missing_variable_still_fails_the_email() -> None:
    with pytest.raises(PermanentFailure, match="other"):
        templates.render("{{ name }} {{ other }}", {"name": "x"}, html=False)
