"""The child processes of `mailq serve` and `mailq up`.

A child gets its settings through its own environment (`env=`): the parent's os.environ is
never changed. It runs in a session of its own, so a terminal's Ctrl-C reaches the parent
alone, which passes exactly one signal on per signal it gets; and on Linux it gets SIGTERM
when the parent dies, even by kill -9.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from types import FrameType

# What the children run: the HTTP service (uvicorn) and a worker process.
SERVICE_APP = "mailq.service.app:app"
WORKER_MODULE = "mailq.worker"
# A stop request, Ctrl-C, or the terminal closing.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def child_environment(settings: Mapping[str, str]) -> dict[str, str]:
    """This process's environment with `settings` (MAILQ_* variables) on top, for a child."""
    env = dict(os.environ)
    env.update(settings)
    return env


def spawn(argv: Sequence[str], env: Mapping[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        list(argv),
        env=dict(env),
        start_new_session=True,
        preexec_fn=_die_with_parent if sys.platform == "linux" else None,
    )


def run_to_the_end(argv: Sequence[str], env: Mapping[str, str]) -> int:
    """Run one child until it exits; each stop signal this process gets is passed on to it as
    SIGTERM (uvicorn stops gracefully on the first and at once on the second). Returns the
    child's exit code (128 + N when signal N killed it)."""
    process = spawn(argv, env)

    def pass_on(_signum: int, _frame: FrameType | None) -> None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)

    previous = {sig: signal.signal(sig, pass_on) for sig in STOP_SIGNALS}
    try:
        code = process.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return code if code >= 0 else 128 - code


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM if the parent dies (even by kill -9)."""
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
