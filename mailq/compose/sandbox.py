"""The Jinja2 sandbox that templates are rendered in, with a budget.

A template comes from a client, so it must neither reach outside its own text nor cost more
than a budget: `{% for i in range(100000) %}{% for j in range(3000) %}...` is 3e8 loop steps.
The environment here

- refuses `{% include %}`, `{% import %}`, `{% from %}` and `{% extends %}` when the
  template is parsed (templates come from strings: there is nothing to load);
- counts steps (each loop iteration, call and filter) and the thread's CPU time while a
  `Budget` is active, and raises BudgetExceeded past either limit;
- bounds what a step may build: the rendered output, strings, lists and numbers made by `*`,
  `**`, `%`, a namespace's values, a filter's result, and format widths;
- keeps the depth of macro calls low (a recursive macro fails at once, not with a
  RecursionError after a thousand frames);
- drops `lipsum` (a global that writes as many paragraphs as asked).

Where the check cannot come before the work (a C function such as `str.replace`), the
arguments are checked before it runs so that a single step stays small.
"""

from __future__ import annotations

import functools
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from jinja2 import TemplateSyntaxError, nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment, safe_range
from jinja2.utils import Namespace

# A rendered template, and any string or list a step builds, holds at most this many items
# (above the 10 MiB body limit: any text the API takes fits).
MAX_OUTPUT_CHARS = 16 * 1024 * 1024
# Loop iterations, calls and filters of one render.
MAX_STEPS = 1_000_000
# CPU seconds of one render (the thread's own time: a busy machine does not count).
MAX_CPU_S = 1.0
# Nested calls (macros calling macros).
MAX_DEPTH = 40
# Bits of an integer a step may make (`**`, `*`).
MAX_INT_BITS = 64 * 1024
# The CPU clock is read every this many steps (reading it is a system call).
_CLOCK_EVERY = 1024
# A printf (`%10000000d`) or str.format (`{:10000000}`) width that would build megabytes.
_PRINTF_WIDE = re.compile(r"%[-+ #0]*\d{7,}|%[-+ #0]*\.\d{7,}")
_FORMAT_WIDE = re.compile(r"\{[^{}]*:[^{}]*\d{7,}[^{}]*\}")
# The filters that build by a width or a count given as an argument.
_WIDTH_FILTERS = frozenset({"center", "indent", "slice", "format", "truncate", "wordwrap"})
_REFUSED_TAGS = (
    (nodes.Include, "{% include %}"),
    (nodes.Import, "{% import %}"),
    (nodes.FromImport, "{% from ... import %}"),
    (nodes.Extends, "{% extends %}"),
)


class BudgetExceeded(SecurityError):
    """A template went over its render budget."""


@dataclass(slots=True)
class Budget:
    """The limits of one render and what it has used so far (`send_budget()`: the limits
    above, read when a render starts)."""

    max_steps: int
    max_cpu_s: float
    max_chars: int = MAX_OUTPUT_CHARS
    steps: int = 0
    depth: int = 0
    _cpu_until: float = field(default=0.0, repr=False)

    def start(self) -> None:
        self._cpu_until = time.thread_time() + self.max_cpu_s

    def step(self, count: int = 1) -> None:
        self.steps += count
        if self.steps > self.max_steps:
            raise BudgetExceeded(f"over the render budget of {self.max_steps:,} steps")
        if self.steps % _CLOCK_EVERY < count and time.thread_time() > self._cpu_until:
            raise BudgetExceeded(f"over the render budget of {self.max_cpu_s:g} s of CPU")

    def size(self, value: object) -> object:
        """`value`, refused when it is a string, list or number bigger than a step may make."""
        if isinstance(value, str | list | tuple | dict | set | bytes):
            if len(value) > self.max_chars:
                raise BudgetExceeded(f"a value over {self.max_chars:,} characters or items")
        elif isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
            raise BudgetExceeded(f"a number over {MAX_INT_BITS:,} bits")
        return value


def send_budget() -> Budget:
    """The budget of one render at send."""
    return Budget(MAX_STEPS, MAX_CPU_S, MAX_OUTPUT_CHARS)


class _Local(threading.local):
    budget: Budget | None = None


_LOCAL = _Local()


def current() -> Budget:
    """The budget of the render running in this thread (none: an unlimited one, so that a
    template rendered outside `render_budgeted` still works)."""
    budget = _LOCAL.budget
    if budget is None:
        budget = _LOCAL.budget = Budget(max_steps=2**62, max_cpu_s=float("inf"))
        budget.start()
    return budget


class BudgetedNamespace(Namespace):
    """`namespace()` whose values are size-checked when set (the one way a loop carries a
    value from one iteration to the next, and so could double a string each time)."""

    def __setitem__(self, name: str, value: Any) -> None:
        current().size(value)
        super().__setitem__(name, value)


def _guard_filter(func: Callable[..., Any], *, widths: bool) -> Callable[..., Any]:
    """A filter that counts as a step and whose result is size-checked; with `widths` (the
    filters that build by a width or a count), also one whose numbers are checked first."""
    skip = 2 if hasattr(func, "jinja_pass_arg") else 1

    @functools.wraps(func)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        budget = current()
        budget.step()
        if widths:
            _check_widths((*args[skip:], *kwargs.values()), budget)
            if args[skip - 1 :] and isinstance(args[skip - 1], str):
                _check_format(args[skip - 1])
        return budget.size(func(*args, **kwargs))

    return guarded


def _check_widths(args: Iterable[Any], budget: Budget) -> None:
    for arg in args:
        if isinstance(arg, int) and not isinstance(arg, bool) and arg > budget.max_chars:
            raise BudgetExceeded(f"a width or count over {budget.max_chars:,}")


def _check_format(text: str) -> None:
    if _PRINTF_WIDE.search(text) or _FORMAT_WIDE.search(text):
        raise BudgetExceeded("a format width over 6 digits")


def _replace(
    func: Callable[..., Any],
) -> Callable[..., Any]:
    @functools.wraps(func)
    def replace(eval_ctx: Any, s: Any, old: Any, new: Any, count: Any = None) -> Any:
        text, old_text, new_text = str(s), str(old), str(new)
        hits = text.count(old_text) if old_text else len(text) + 1
        if len(text) + hits * len(new_text) > current().max_chars:
            raise BudgetExceeded(f"a value over {current().max_chars:,} characters")
        return func(eval_ctx, s, old, new, count)

    return replace


class BudgetedEnvironment(SandboxedEnvironment):
    """A SandboxedEnvironment whose templates render within `current()`'s budget."""

    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.globals["range"] = self.budget_range
        self.globals["namespace"] = BudgetedNamespace
        self.globals.pop("lipsum", None)
        filters = {
            name: _guard_filter(func, widths=name in _WIDTH_FILTERS)
            for name, func in self.filters.items()
        }
        filters["replace"] = _guard_filter(_replace(self.filters["replace"]), widths=False)
        self.filters.update(filters)

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        for node_type, spelling in _REFUSED_TAGS:
            found = tree.find(node_type)
            if found is not None:
                raise TemplateSyntaxError(
                    f"{spelling} is not allowed (a template is one text)", found.lineno
                )
        for loop in tree.find_all(nodes.For):
            # Every loop's iterable goes through `budget_iter`: a step per iteration.
            loop.iter = nodes.Call(
                nodes.EnvironmentAttribute("budget_iter"), [loop.iter], [], None, None
            )
        return tree

    @staticmethod
    def budget_range(*args: int) -> range:
        budget = current()
        for arg in args:
            budget.size(arg)
        budget.step()
        return safe_range(*args)

    @staticmethod
    def budget_iter(iterable: Iterable[Any]) -> Iterator[Any]:
        budget = current()
        for item in iterable:
            budget.step()
            yield item

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        budget = current()
        budget.step()
        for arg in (*args, *kwargs.values()):
            budget.size(arg)
        if budget.depth >= MAX_DEPTH:
            raise BudgetExceeded(f"calls nested more than {MAX_DEPTH} deep (a recursive macro?)")
        budget.depth += 1
        try:
            return budget.size(super().call(__context, __obj, *args, **kwargs))
        finally:
            budget.depth -= 1

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        budget = current()
        budget.step()
        if operator == "**" and isinstance(left, int) and isinstance(right, int):
            if right > 0 and max(1, abs(left).bit_length()) * right > MAX_INT_BITS:
                raise BudgetExceeded(f"a number over {MAX_INT_BITS:,} bits")
        elif operator == "*":
            _check_product(left, right, budget)
        elif operator == "%" and isinstance(left, str):
            _check_format(left)
            _check_widths(right if isinstance(right, tuple) else (right,), budget)
        return budget.size(self.binop_table[operator](left, right))

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        text = getattr(value, "__self__", "")
        if isinstance(text, str):
            _check_format(text)
        checked = wrapped

        def format_checked(*args: Any, **kwargs: Any) -> str:
            _check_widths((*args, *kwargs.values()), current())
            return checked(*args, **kwargs)

        return format_checked


def _check_product(left: Any, right: Any, budget: Budget) -> None:
    for seq, times in ((left, right), (right, left)):
        repeated = isinstance(times, int) and isinstance(seq, str | list | tuple)
        if repeated and len(seq) * times > budget.max_chars:
            raise BudgetExceeded(f"a value over {budget.max_chars:,} characters or items")
    both_int = isinstance(left, int) and isinstance(right, int)
    if both_int and left.bit_length() + right.bit_length() > MAX_INT_BITS:
        raise BudgetExceeded(f"a number over {MAX_INT_BITS:,} bits")


def render_budgeted(template: Any, context: dict[str, Any], budget: Budget) -> str:
    """Render `template` (of a BudgetedEnvironment) within `budget`; BudgetExceeded past it."""
    previous = _LOCAL.budget
    _LOCAL.budget = budget
    budget.start()
    try:
        out: list[str] = []
        size = 0
        for chunk in template.generate(context):
            size += len(chunk)
            if size > budget.max_chars:
                raise BudgetExceeded(f"the output is over {budget.max_chars:,} characters")
            out.append(chunk)
        return "".join(out)
    finally:
        _LOCAL.budget = previous
