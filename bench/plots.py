"""PNG plots of a run (matplotlib, from the `bench` extra): the drain rate against the
number of worker processes per system with the bare SQL loop drawn as the ceiling, and the
distribution of the wake-up latency per system. Without matplotlib the run says so and
writes no plot."""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench.plan import BARE, BARE_BOUNDED, MAILQ_DEFAULTS
from mailq.settings import CONCURRENCY

LABELS = {
    "mailq": "mailq",
    MAILQ_DEFAULTS: f"mailq, default settings ({CONCURRENCY} in flight)",
    "pgqueuer": "PgQueuer (batch 10)",
    "pgqueuer_b100": "PgQueuer (batch 100)",
    "procrastinate": "Procrastinate",
}


def draw(doc: Mapping[str, Any], directory: Path, stem: str) -> list[str]:
    """Write the plots; one line per file written (or why none was)."""
    if importlib.util.find_spec("matplotlib") is None:
        return ["plots: none (matplotlib is not installed: pip install -e '.[bench]')"]
    import matplotlib

    matplotlib.use("Agg")
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, fn in (("drain", _drain), ("wakeup", _wakeup)):
        path = directory / f"{stem}-{name}.png"
        if fn(doc, path):
            written.append(f"plot written to {path}")
    return written


def _drain(doc: Mapping[str, Any], path: Path) -> bool:
    import matplotlib.pyplot as plt

    by_system: dict[str, list[tuple[int, float]]] = {}
    for m in doc["measurements"]:
        if m["measure"] == "drain" and m["median"].get("rate"):
            by_system.setdefault(m["system"], []).append(
                (int(m["params"]["processes"]), float(m["median"]["rate"]))
            )
    if not by_system:
        return False
    fig, ax = plt.subplots(figsize=(7, 5.5), dpi=110)
    for system, points in by_system.items():
        xs, ys = zip(*sorted(points), strict=True)
        if system == BARE:
            ax.plot(xs, ys, "k--", marker="s", label="ceiling: bare SQL loop (SKIP LOCKED, 100)")
        elif system == BARE_BOUNDED:
            ax.plot(xs, ys, "k:", marker="s", label=f"bare SQL loop, {CONCURRENCY} per commit")
        else:
            ax.plot(xs, ys, marker="o", label=LABELS.get(system, system))
    ax.set_xlabel("worker processes")
    ax.set_ylabel("drained per second")
    counts = sorted({p for points in by_system.values() for p, _ in points})
    ax.set_xticks(counts)
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    emails = doc["options"]["emails"]
    ax.set_title(f"Drain of {emails:,} queued no-op jobs (median of {doc['options']['repeat']})")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def _wakeup(doc: Mapping[str, Any], path: Path) -> bool:
    import matplotlib.pyplot as plt

    latencies: dict[str, list[float]] = {}
    for m in doc["measurements"]:
        if m["measure"] != "wakeup":
            continue
        for sample in m["samples"]:
            latencies.setdefault(m["system"], []).extend(sample["details"].get("latencies_ms", []))
    latencies = {k: sorted(v) for k, v in latencies.items() if v}
    if not latencies:
        return False
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    for system, values in latencies.items():
        n = len(values)
        p99 = values[min(n - 1, int(0.99 * n))]
        label = f"{LABELS.get(system, system)} (p99 {p99:.1f} ms)"
        ax.step(values, [(i + 1) / n for i in range(n)], where="post", label=label)
    ax.set_xscale("log")
    ax.set_xlabel("enqueue return → handler start (ms, log scale)")
    ax.set_ylabel("fraction of jobs")
    ax.grid(True, which="both", alpha=0.3)
    ax.set_title("Wake-up latency, 2 idle workers, jobs enqueued one at a time at 50/s")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True
