"""How the CLI shows things: tables (rich) for people, JSON for machines, and progress of
long work (a bar on a terminal, plain lines otherwise). Results go to stdout; progress and
messages to stderr."""

from __future__ import annotations

import json
import re
import sys
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any, TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

PLAIN_EVERY_S = 2.0


def _default(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def print_json(value: object, stream: TextIO | None = None) -> None:
    out = stream or sys.stdout
    out.write(json.dumps(value, default=_default, indent=2) + "\n")


def console(stream: TextIO | None = None) -> Console:
    """A console on stdout; wide enough for the tables when output is not a terminal.

    Everything it prints is text, never markup: an error message, an address or a campaign
    name holding `[bold]` or `[/x]` is shown as it is (rich would style it, or fail)."""
    out = stream or sys.stdout
    return Console(
        file=out, width=None if out.isatty() else 160, highlight=False, markup=False, emoji=False
    )


def table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[object]]) -> Table:
    """A table; columns whose values are all numbers are right-aligned."""
    view = Table(title=title, title_justify="left", header_style="bold")
    for index, name in enumerate(columns):
        values = [row[index] for row in rows if row[index] is not None]
        numeric = bool(values) and all(isinstance(v, int) for v in values)
        view.add_column(name, justify="right" if numeric else "left", overflow="fold")
    for row in rows:
        view.add_row(*(cell(value) for value in row))
    return view


def cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.astimezone().strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, float):
        return age(value)
    if isinstance(value, list | tuple):
        return _printable(",".join(str(v) for v in value))
    return _printable(str(value))


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def _printable(text: str) -> str:
    """Control characters (an ANSI escape in an SMTP reply) shown escaped, not sent to the
    terminal."""
    return _CONTROL.sub(lambda m: repr(m.group(0))[1:-1], text)


def age(seconds: float | None) -> str:
    """A duration the way people read it: 42s, 3m 05s, 2h 10m, 4d 3h."""
    if seconds is None:
        return "-"
    sign = "-" if seconds < 0 else ""
    s = int(abs(seconds))
    if s < 60:
        return f"{sign}{s}s"
    if s < 3600:
        return f"{sign}{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{sign}{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{sign}{s // 86400}d {s % 86400 // 3600}h"


def truncate(text: str | None, limit: int = 60) -> str | None:
    if text is None or len(text) <= limit:
        return text
    return text[: limit - 1] + "…"


class Tracker:
    """Counts work done; shows it as a bar (terminal) or a line every few seconds."""

    def __init__(self, label: str, total: int | None, stream: TextIO) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self._stream = stream
        self._progress: Progress | None = None
        self._task: Any = None
        self._last_line = time.monotonic()

    def advance(self, count: int) -> None:
        self.done += count
        if self._progress is not None:
            self._progress.update(self._task, completed=self.done)
            return
        now = time.monotonic()
        if now - self._last_line >= PLAIN_EVERY_S:
            self._last_line = now
            self._line()

    def _line(self) -> None:
        of = f"/{self.total}" if self.total is not None else ""
        self._stream.write(f"{self.label}: {self.done}{of}\n")
        self._stream.flush()


@contextmanager
def progress(
    label: str, total: int | None = None, stream: TextIO | None = None
) -> Iterator[Tracker]:
    """Track long work. On a terminal: a live bar on stderr. Otherwise: plain lines."""
    out = stream or sys.stderr
    tracker = Tracker(label, total, out)
    if not out.isatty():
        yield tracker
        tracker._line()  # the closing count, on success only: a failure says its own line
        return
    columns: list[Any] = [SpinnerColumn(), TextColumn("{task.description}", markup=False)]
    if total is not None:
        columns += [BarColumn(), MofNCompleteColumn()]
    else:
        columns += [TextColumn("{task.completed}")]
    columns.append(TimeElapsedColumn())
    progress_console = Console(file=out, markup=False, emoji=False)
    with Progress(*columns, console=progress_console, transient=False) as bar:
        tracker._progress = bar
        tracker._task = bar.add_task(label, total=total)
        yield tracker


def records(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [dict(row) for row in rows]
