"""CPU time spent by processes of this host (Linux /proc), to report CPU per email next to
the rates: on a shared machine the rate moves with the neighbours' load, CPU per email much
less."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a live process; None when it cannot be read."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / _TICKS


def snapshot(pids: Iterable[int]) -> dict[int, float]:
    readings = {pid: cpu_seconds(pid) for pid in pids}
    return {pid: value for pid, value in readings.items() if value is not None}


def spent(before: Mapping[int, float], after: Mapping[int, float]) -> float | None:
    """CPU seconds spent between two snapshots (a process new in `after` counts from 0);
    None when nothing could be read."""
    if not after:
        return None
    return sum(value - before.get(pid, 0.0) for pid, value in after.items())
