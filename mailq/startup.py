"""Signals that reach a worker process while it starts, before its event loop handles them.

`python -m mailq.worker` spends a while importing (the drivers, the templates) and starting
(settings, the embedded database) before the worker's loop installs its SIGTERM handler; a
SIGTERM then would kill it with status -15, where SPEC.md says a stopped worker exits 0. So
this module, the first that mailq/__init__.py imports (stdlib only), catches SIGTERM and
SIGINT at once in that process alone (and `mailq worker` catches them as its command starts);
the worker acts on what it recorded once it runs (mailq.cli.main): it stops, exit 0.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Sequence

# SIGTERM/SIGINT received before the worker's loop took over, in order.
EARLY_SIGNALS: list[int] = []


def _record(signum: int, _frame: object) -> None:
    EARLY_SIGNALS.append(signum)


def catch_early_signals() -> None:
    """Record SIGTERM and SIGINT in EARLY_SIGNALS instead of dying of them."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _record)


def starting_a_worker(argv: Sequence[str] | None = None) -> bool:
    """Whether this process is `python [options] -m mailq.worker ...`."""
    args = list(sys.orig_argv if argv is None else argv)
    return any(
        (a == "-m" and b == "mailq.worker") or a == "-mmailq.worker"
        for a, b in zip(args, [*args[1:], ""], strict=True)
    )


if starting_a_worker():
    catch_early_signals()
