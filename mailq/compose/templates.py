"""Subject, text and HTML are Jinja2 templates, rendered in a sandbox (HTML autoescaped).

They come inline with an email, or by name from a templates folder: `<folder>/<name>/`
holds `subject.txt` and `text.txt` and/or `html.html`. The folder set in MAILQ_CONFIG is
searched first, then the defaults shipped for the built-in kinds (mailq/compose/default_templates).
A named template's sources are copied into the email when it is queued, so what is sent
does not change when the folder changes later.

When the email is queued a template is checked for everything that can fail later: its
syntax, the tags that would load another template (refused), unknown filters and tests (at
compile), variables its context lacks (read from the template, cached per text), and then one
trial render within the budget per distinct template text (cached by its hash), so that a
template that divides by zero or loops for minutes is refused at once, not at send.

At send a template is rendered within a budget of steps, CPU time and size
(mailq.compose.sandbox); over it, the email fails permanently (never retried).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateError, meta
from markupsafe import escape

from mailq.caches import BytesCache, bytes_cache
from mailq.compose import sandbox
from mailq.compose.sandbox import Budget, BudgetedEnvironment, render_budgeted
from mailq.errors import InvalidEmail, PermanentFailure

_TEXT_ENV = BudgetedEnvironment(undefined=StrictUndefined, autoescape=False)
_HTML_ENV = BudgetedEnvironment(undefined=StrictUndefined, autoescape=True)
# Each cache keyed by template text holds at most this much (its keys counted in full).
TEMPLATE_CACHE_BYTES = 32 * 1024 * 1024
# A compiled template keeps its Python code: counted as this many times its text.
_COMPILED_WEIGHT = 8
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# The trial render at enqueue: the send's budget, but a fifth of its CPU time (it runs where
# the email is queued, e.g. on the service's event loop).
TRIAL_CPU_S = 0.2
# Shown of an error's message at most (a template error may quote the template).
MAX_ERROR_CHARS = 300


@bytes_cache(TEMPLATE_CACHE_BYTES)
def variables_of(source: str) -> frozenset[str]:
    """The context variables a template reads; raises InvalidEmail on a syntax error."""
    if "{" not in source:
        return frozenset()
    try:
        return frozenset(meta.find_undeclared_variables(_TEXT_ENV.parse(source)))
    except TemplateError as exc:
        raise InvalidEmail(f"template syntax error: {_short(exc)}") from None


def check_context(
    field: str,
    source: str,
    context: Mapping[str, Any],
    *,
    header: bool = False,
    partial: bool = False,
) -> None:
    """Refuse a context that lacks a variable the template uses (unless `partial`: more
    comes later); for a header (the subject), also one whose value would put a line break
    or control character there."""
    used = variables_of(source) - PROVIDED_VARIABLES
    missing = sorted(used - context.keys())
    if missing and not partial:
        raise InvalidEmail(
            f"{field}: the template uses {', '.join(missing)}, which the context lacks"
        )
    check_compiles(field, source, html=field == "html")
    if not partial:
        _trial(field, source, context, html=field == "html")
    if header:
        for name in used & context.keys():
            value = context[name]
            if isinstance(value, str) and _CONTROL.search(value):
                raise InvalidEmail(
                    f"context.{name}: control characters (CR, LF, ...) are not allowed in a "
                    f"value the {field} uses"
                )


def check_compiles(field: str, source: str, *, html: bool) -> None:
    """Refuse a template that does not compile (unknown filters and tests are found here)."""
    if "{" not in source or _simple_parts(source) is not None:
        return
    try:
        _compiled(source, html)
    except TemplateError as exc:
        raise InvalidEmail(f"{field}: template error: {_short(exc)}") from None


# Trial renders done: (text, html) -> the error, or "" when it rendered.
_TRIALS: BytesCache[str] = BytesCache(TEMPLATE_CACHE_BYTES)


def _trial(field: str, source: str, context: Mapping[str, Any], *, html: bool) -> None:
    """One budgeted render of each distinct template text, with the first context it comes
    with (the variables of every context are checked apart, without rendering)."""
    if "{" not in source or _simple_parts(source) is not None:
        return
    key = (source, html)
    found, error = _TRIALS.get(key)
    if not found:
        error = ""
        values = {"unsubscribe_url": "https://example.invalid/u", **context}
        try:
            trial = Budget(sandbox.MAX_STEPS, min(TRIAL_CPU_S, sandbox.MAX_CPU_S))
            render(source, values, html=html, budget=trial)
        except PermanentFailure as exc:
            error = exc.reason
        _TRIALS.put(key, error)
    if error:
        raise InvalidEmail(f"{field}: {error}")


def _short(exc: BaseException) -> str:
    """The error's message on one line (Jinja's syntax errors add the template's line)."""
    text = (str(exc) or type(exc).__name__).strip().splitlines()[0]
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 3] + "..."


def _compiled_weight(key: Any, _value: object) -> int:
    return _COMPILED_WEIGHT * len(key[0]) + 4096


@bytes_cache(TEMPLATE_CACHE_BYTES, weight=_compiled_weight)
def _compiled(source: str, html: bool) -> Template:
    return (_HTML_ENV if html else _TEXT_ENV).from_string(source)


# Templates that are only text and `{{ name }}` (most subjects and bodies) are rendered
# without Jinja: Jinja's render sets up a new Context per call, which cost about 8-11 us per
# template here, as much as the rest of building a message. The result is the same as
# Jinja's (tests/compose/test_templates_fast_path.py compares them): newlines normalised to \n, one
# trailing newline dropped, str() of the value, HTML-escaped with autoescape.
_SIMPLE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_NEWLINE = re.compile(r"\r\n|\r|\n")
# Names that Jinja reads as literals or operators, never as context variables.
_JINJA_WORDS = frozenset(
    ["true", "false", "none", "True", "False", "None", "and", "or", "not", "in", "is", "if", "else"]
)


@bytes_cache(TEMPLATE_CACHE_BYTES)
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


_EXECUTOR: list[ThreadPoolExecutor] = []
# Threads that render templates off a worker's event loop: each render is bounded by its
# budget, so a few threads are enough; a render past its budget ends by itself.
RENDER_THREADS = 2


def render_executor() -> ThreadPoolExecutor:
    """The process's render threads (made on first use)."""
    if not _EXECUTOR:
        _EXECUTOR.append(
            ThreadPoolExecutor(max_workers=RENDER_THREADS, thread_name_prefix="mailq-render")
        )
    return _EXECUTOR[0]


def needs_sandbox(source: str | None) -> bool:
    """Whether rendering `source` runs Jinja (not only text and `{{ name }}`): the worker
    renders such templates off its event loop."""
    return source is not None and "{" in source and _simple_parts(source) is None


def render(
    source: str, context: Mapping[str, Any], *, html: bool, budget: Budget | None = None
) -> str:
    """Render at send time within `budget` (the default: mailq.compose.sandbox's limits); a
    failure, or going over the budget, fails the email permanently (no half-empty message)."""
    if "{" not in source:
        return source
    parts = _simple_parts(source)
    if parts is not None:
        rendered = _render_simple(parts, context, html)
        if rendered is not None:
            return rendered
    try:
        return render_budgeted(
            _compiled(source, html), dict(context), budget or sandbox.send_budget()
        )
    except RecursionError:
        raise PermanentFailure("template rendering failed: recursion too deep") from None
    except TemplateError as exc:
        raise PermanentFailure(f"template rendering failed: {_short(exc)}") from None
    except Exception as exc:
        # A template's own errors (1/0, an operation on the wrong type) are the email's.
        reason = f"{type(exc).__name__}: {_short(exc)}"
        raise PermanentFailure(f"template rendering failed: {reason}") from None


# Variables mailq itself gives every template at send time (not needed in the context).
PROVIDED_VARIABLES = frozenset({"unsubscribe_url"})
DEFAULT_FOLDER = Path(__file__).resolve().parent / "default_templates"
TEMPLATE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_PARTS = (("subject", "subject.txt"), ("text", "text.txt"), ("html", "html.html"))


@dataclass(frozen=True, slots=True)
class NamedTemplate:
    """The sources of one named template (each a Jinja2 template)."""

    name: str
    subject: str
    text: str | None
    html: str | None


class TemplateStore:
    """Named templates from folders, first match wins; each read once and kept."""

    def __init__(self, folders: Sequence[Path] = (DEFAULT_FOLDER,)) -> None:
        self.folders = tuple(folders)
        self._cache: dict[str, NamedTemplate] = {}

    def get(self, name: str) -> NamedTemplate:
        """The template called `name`; InvalidEmail (field `template`) when there is none."""
        cached = self._cache.get(name)
        if cached is not None:
            return cached
        if not isinstance(name, str) or not TEMPLATE_NAME.match(name):
            raise InvalidEmail(f"template: {name!r} is not a template name (a-z, 0-9, _, -)")
        for folder in self.folders:
            if (folder / name).is_dir():
                template = _read(folder / name, name)
                self._cache[name] = template
                return template
        raise InvalidEmail(f"template: no template called {name!r}")


def _read(folder: Path, name: str) -> NamedTemplate:
    parts: dict[str, str | None] = {}
    for part, filename in _PARTS:
        path = folder / filename
        parts[part] = path.read_text("utf-8") if path.is_file() else None
    subject = (parts["subject"] or "").strip()
    if not subject:
        raise InvalidEmail(f"template: {name!r} has no subject.txt")
    if not parts["text"] and not parts["html"]:
        raise InvalidEmail(f"template: {name!r} has neither text.txt nor html.html")
    template = NamedTemplate(name, subject, parts["text"], parts["html"])
    for part in ("subject", "text", "html"):
        source = getattr(template, part)
        if source:
            try:
                variables_of(source)
            except InvalidEmail as exc:
                raise InvalidEmail(f"template: {name}/{part}: {exc}") from None
    return template


DEFAULT_TEMPLATES = TemplateStore()
