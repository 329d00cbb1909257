"""The results of a run: medians over rounds, the JSON document, and the markdown table."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

from mailq.bench.plan import BARE, MAILQ, Group, Measurement, Options, Sample
from mailq.bench.stats import median

SCHEMA_VERSION = 1

DEFINITIONS = {
    "enqueue_bulk": "N emails in one mailq.enqueue call on asyncpg (validation + COPY + "
    "commit), timed around the call; bare: COPY of the same JSON payloads into bench_jobs",
    "enqueue_one": "emails queued one mailq.enqueue call (one transaction) at a time",
    "drain": "N queued emails (null backend: each message is still built) / seconds from the "
    "moment the work became available to idle, connected processes (mailq: the enqueue "
    "commit, workers woken by NOTIFY; bare: every process told to go) to the last "
    "finished_at in the database; bare: one asyncpg connection per process claiming 100 rows "
    "with FOR UPDATE SKIP LOCKED and marking them done",
    "wakeup": "from the return of an enqueue call (the bench's clock, right after the commit) "
    "to attempts.started_at (the worker's clock, before it builds the message); same host",
    "cpu_us_per_item": "user+system CPU of the drainer processes and of the Postgres "
    "processes serving them, from /proc, over the drain, per email or row",
    "duplicates": "emails with more than one attempt recorded (bare: rows marked done twice)",
    "lost": "emails never sent (bare: rows never marked done)",
}


def measurement_result(m: Measurement, samples: Sequence[Sample]) -> dict[str, Any]:
    names = sorted({name for s in samples for name in s.figures})
    counts = sorted({name for s in samples for name in s.counts})
    return {
        "key": m.key,
        "measure": m.measure,
        "system": m.system,
        "unit": m.unit,
        "params": dict(m.params),
        "headline": m.headline,
        "median": {n: median([s.figures[n] for s in samples if n in s.figures]) for n in names},
        "counts": {n: sum(s.counts.get(n, 0) for s in samples) for n in counts},
        "samples": [asdict(s) for s in samples],
    }


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or not b or math.isnan(a) or math.isnan(b):
        return None
    return a / b


def _paired_ratio(group: Group, results: Mapping[str, dict[str, Any]]) -> float | None:
    """The median over rounds of mailq / bare within each round (the two ran back to back,
    so drift between rounds cancels out)."""
    members = {m.system: m for m in group.members}
    pairs = zip(
        results[members[MAILQ].key]["samples"], results[members[BARE].key]["samples"], strict=False
    )
    headline = members[MAILQ].headline
    ratios = [
        r
        for a, b in pairs
        if (r := _ratio(a["figures"].get(headline), b["figures"].get(headline))) is not None
    ]
    return median(ratios) if ratios else None


def summary(groups: Sequence[Group], results: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    """Per group: each system's headline figure, and mailq / bare where both ran. Totals of
    duplicates and lost, for mailq and for the bare loop."""
    by_group: dict[str, Any] = {}
    totals = {"duplicates": 0, "lost": 0, "bare_duplicates": 0, "bare_lost": 0}
    for group in groups:
        entry: dict[str, Any] = {}
        for m in group.members:
            result = results.get(m.key)
            if result is None:
                continue
            entry[m.system] = result["median"].get(m.headline)
            entry.setdefault("units", {})[m.system] = m.unit
            if m.measure == "wakeup":
                entry.update({k: v for k, v in result["median"].items()})
            cpu = {
                k: result["median"][f"{k}_cpu_us"]
                for k in ("drainers", "server")
                if f"{k}_cpu_us" in result["median"]
            }
            if cpu:
                entry.setdefault("cpu_us_per_item", {})[m.system] = cpu
            prefix = "" if m.system == MAILQ else f"{m.system}_"
            for name in ("duplicates", "lost"):
                if f"{prefix}{name}" in totals:
                    totals[f"{prefix}{name}"] += result["counts"].get(name, 0)
        if MAILQ in entry and BARE in entry:
            entry["ratio"] = _ratio(entry[MAILQ], entry[BARE])
            entry["ratio_per_round"] = _paired_ratio(group, results)
        if entry:
            by_group[group.name] = entry
    return {"groups": by_group, **totals}


def document(
    *,
    options: Options,
    environment: Mapping[str, Any],
    started_at: str,
    finished_at: str,
    groups: Sequence[Group],
    results: Mapping[str, dict[str, Any]],
) -> dict[str, Any]:
    opts = asdict(options)
    opts["only"] = sorted(options.only)
    return {
        "bench": "mailq",
        "schema_version": SCHEMA_VERSION,
        "started_at": started_at,
        "finished_at": finished_at,
        "environment": dict(environment),
        "options": opts,
        "measurements": list(results.values()),
        "summary": summary(groups, results),
        "definitions": DEFINITIONS,
    }


def _n(value: float | None, digits: int = 0) -> str:
    if value is None or math.isnan(value):
        return "-"
    return f"{value:,.{digits}f}"


def _label(group: Group, options: Options) -> str:
    measure = group.members[0].measure
    params = group.members[0].params
    if measure == "enqueue_bulk":
        return f"bulk enqueue, {options.emails:,} emails"
    if measure == "enqueue_one":
        return f"enqueue one at a time, {options.one_at_a_time:,} emails"
    if measure == "drain":
        n = params["processes"]
        return f"drain {options.emails:,}, {n} process{'es' if n > 1 else ''}"
    if measure == "wakeup":
        return (
            f"wake-up p50 / p95 / p99, {options.wakeup_emails} emails at "
            f"{options.wakeup_rate:g}/s, {options.wakeup_workers} idle workers"
        )
    return group.name


def _cpu_table(doc: Mapping[str, Any], groups: Sequence[Group]) -> list[str]:
    """CPU per item of the drains, where it could be read."""
    results = {m["key"]: m for m in doc["measurements"]}
    rows = []
    for group in groups:
        if group.members[0].measure != "drain":
            continue
        cells = []
        for system in (MAILQ, BARE):
            m = next((m for m in group.members if m.system == system), None)
            median_ = results[m.key]["median"] if m and m.key in results else {}
            cells += [_n(median_.get("drainers_cpu_us"), 1), _n(median_.get("server_cpu_us"), 1)]
        if any(c != "-" for c in cells):
            n = group.members[0].params["processes"]
            rows.append(f"| {n} | " + " | ".join(cells) + " |")
    if not rows:
        return []
    return [
        "",
        "CPU per email or row during the drains, in microseconds (drainer processes; the "
        "Postgres processes serving them):",
        "",
        "| processes | mailq workers | their Postgres | bare loops | their Postgres |",
        "| ---: | ---: | ---: | ---: | ---: |",
        *rows,
    ]


def markdown(doc: Mapping[str, Any], groups: Sequence[Group], options: Options) -> str:
    env = doc["environment"]
    rounds = "1 round" if options.repeat == 1 else f"median of {options.repeat}"
    load = ""
    if env.get("load_average_at_start") and env.get("load_average_at_end"):
        load = (
            f", load average {env['load_average_at_start'][0]:.1f} at start, "
            f"{env['load_average_at_end'][0]:.1f} at end"
        )
    lines = [
        f"mailq bench, {doc['started_at']}: PostgreSQL {env.get('postgres_version', '?')}, "
        f"{env.get('cpus', '?')} CPUs, fsync={env.get('fsync', '?')}, {rounds}{load}",
        "",
        "| measure | mailq | bare SQL | mailq / bare | per round |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    by_group = doc["summary"]["groups"]
    for group in groups:
        entry = by_group.get(group.name)
        if not entry:
            continue
        label = _label(group, options)
        if group.members[0].measure == "wakeup":
            figures = " / ".join(_n(entry.get(k), 1) for k in ("p50_ms", "p95_ms", "p99_ms"))
            lines.append(f"| {label} | {figures} ms | | | |")
            continue
        units = {m.system: m.unit for m in group.members}
        mailq = f"{_n(entry.get(MAILQ))} {units.get(MAILQ, '')}" if MAILQ in entry else ""
        bare = f"{_n(entry.get(BARE))} {units.get(BARE, '')}" if BARE in entry else ""
        if group.members[0].measure == "enqueue_bulk" and bare:
            bare += " (COPY)"
        ratio = f"{entry['ratio']:.2f}x" if entry.get("ratio") is not None else ""
        paired = entry.get("ratio_per_round")
        per_round = f"{paired:.2f}x" if paired is not None and options.repeat > 1 else ""
        lines.append(f"| {label} | {mailq} | {bare} | {ratio} | {per_round} |")
    lines += _cpu_table(doc, groups)
    s = doc["summary"]
    lines += [
        "",
        f"mailq: {s['duplicates']} emails handled twice, {s['lost']} never "
        f"(every drain and wake-up run); bare loop: {s['bare_duplicates']} twice, "
        f"{s['bare_lost']} never.",
        "Drain rate = emails / (last finished_at in the database - the moment the work was "
        "available to idle, connected processes). mailq / bare: the ratio of the medians; "
        "per round: the median of the ratios of runs made back to back.",
    ]
    return "\n".join(lines) + "\n"
