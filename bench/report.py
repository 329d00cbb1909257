"""The results of a run: medians over rounds, the JSON document, and the markdown table."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

from bench import esp
from bench.plan import (
    BARE,
    BARE_BOUNDED,
    BARE_SMTP,
    HISTORY,
    MAILQ,
    MAILQ_DEFAULTS,
    Group,
    Measurement,
    Options,
    Sample,
)
from bench.stats import median
from mailq.settings import CONCURRENCY

SCHEMA_VERSION = 1

DEFINITIONS = {
    "enqueue_bulk": "N emails in one mailq.enqueue call on asyncpg (validation + COPY + "
    "commit), timed around the call; bare: COPY of the same JSON payloads into bench_jobs",
    "enqueue_one": "emails queued one mailq.enqueue call (one transaction) at a time",
    "drain": "N queued emails (null backend: each message is still built) / seconds from the "
    "moment the work became available to idle, connected processes (mailq: the enqueue "
    "commit, workers woken by NOTIFY; bare: every process told to go) to the last "
    "finished_at in the database; bare: one asyncpg connection per process claiming 100 rows "
    "with FOR UPDATE SKIP LOCKED and marking them done; bare_bounded: the same loop under "
    f"mailq's default bound, {CONCURRENCY} rows per commit, the next {CONCURRENCY} claimed on a "
    "second connection while they commit",
    "wakeup": "from the return of an enqueue call (the bench's clock, right after the commit) "
    "to attempts.started_at (the worker's clock, before it builds the message); same host",
    "cpu_us_per_item": "user+system CPU of the drainer processes and of the Postgres "
    "processes serving them, from /proc, over the drain, per email or row",
    "vacuum": "mailq draining at full speed (2 workers, null backend, the backlog kept topped "
    "up) while another connection idles in a transaction that holds an xid (`BEGIN; SELECT "
    "txid_current()`) for the hold: emails sent per second before, during (and its last "
    "quarter) and after; claim p50/p99 = the claim statement's server time (query_start to "
    "state_change of connections seen idle after it in pg_stat_activity, sampled every 4 ms); "
    "entries read from emails_due_idx per email (pg_stat_user_indexes)",
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


def _paired_ratio(
    group: Group, results: Mapping[str, dict[str, Any]], top: str, bottom: str
) -> float | None:
    """The median over rounds of top / bottom within each round (the two ran back to back,
    so drift between rounds cancels out)."""
    members = {m.system: m for m in group.members}
    pairs = zip(
        results[members[top].key]["samples"], results[members[bottom].key]["samples"], strict=False
    )
    headline = members[top].headline
    ratios = [
        r
        for a, b in pairs
        if (r := _ratio(a["figures"].get(headline), b["figures"].get(headline))) is not None
    ]
    return median(ratios) if ratios else None


# The pair each group's ratio compares (top / bottom), where both ran.
RATIO_PAIRS = {"history": (HISTORY, MAILQ), "smtp": (MAILQ, BARE_SMTP)}


def summary(groups: Sequence[Group], results: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    """Per group: each system's headline figure, the medians of every figure per system, and
    mailq / bare where both ran. Totals of duplicates and lost: mailq's, the bare loop's,
    and each peer's."""
    by_group: dict[str, Any] = {}
    totals = {"duplicates": 0, "lost": 0, "bare_duplicates": 0, "bare_lost": 0}
    per_peer: dict[str, dict[str, int]] = {}
    for group in groups:
        entry: dict[str, Any] = {}
        for m in group.members:
            result = results.get(m.key)
            if result is None:
                continue
            entry[m.system] = result["median"].get(m.headline)
            entry.setdefault("units", {})[m.system] = m.unit
            entry.setdefault("by_system", {})[m.system] = dict(result["median"])
            if m.measure == "wakeup" and m.system == MAILQ:
                entry.update({k: v for k, v in result["median"].items()})
            cpu = {
                k: result["median"][f"{k}_cpu_us"]
                for k in ("drainers", "server")
                if f"{k}_cpu_us" in result["median"]
            }
            if cpu:
                entry.setdefault("cpu_us_per_item", {})[m.system] = cpu
            for name in ("duplicates", "lost"):
                n = result["counts"].get(name, 0)
                if m.system.startswith(MAILQ):  # mailq's own runs (plan.py)
                    totals[name] += n
                elif m.system in (BARE, BARE_BOUNDED):
                    totals[f"bare_{name}"] += n
                else:
                    per_peer.setdefault(m.system, {"duplicates": 0, "lost": 0})[name] += n
        top, bottom = RATIO_PAIRS.get(group.name, (MAILQ, BARE))
        if top in entry and bottom in entry:
            entry["ratio"] = _ratio(entry[top], entry[bottom])
            entry["ratio_per_round"] = _paired_ratio(group, results, top, bottom)
        if BARE_BOUNDED in entry:
            entry["bounded"] = {
                "defaults_vs_bounded": _ratio(entry.get(MAILQ_DEFAULTS), entry[BARE_BOUNDED]),
                "bounded_vs_bare": _ratio(entry[BARE_BOUNDED], entry.get(BARE)),
            }
        if entry:
            by_group[group.name] = entry
    return {"groups": by_group, **totals, "peers": per_peer}


def _get(groups: Mapping[str, Any], group: str, system: str, figure: str | None = None) -> Any:
    entry = groups.get(group) or {}
    if figure is None:
        return entry.get(system)
    return (entry.get("by_system") or {}).get(system, {}).get(figure)


def targets(summary_: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every target of the hot-path issue (16) with the figure of this run: `score` is the
    figure over what the target asks, oriented so that >= 1 means the target is met."""
    g = summary_["groups"]
    rows: list[dict[str, Any]] = []

    def add(name: str, figure: str, score: float | None, goal: str) -> None:
        met = None if score is None else bool(score >= 1.0)
        rows.append({"target": name, "figure": figure, "goal": goal, "score": score, "met": met})

    def at_least(name: str, top: float | None, bottom: float | None, goal: float) -> None:
        r = _ratio(top, bottom)
        add(name, f"{_n(top)} vs {_n(bottom)}/s = {_x(r)}", _ratio(r, goal), f"{goal:g}x")

    drains = sorted((k for k in g if k.startswith("drain_")), key=lambda k: int(k[6:]))
    for key in drains:
        n = key[6:]
        bare = _get(g, key, BARE)
        at_least(f"drain, {n} process(es): mailq ≥ 0.6x the bare loop", _get(g, key, MAILQ),
                 bare, 0.6)  # fmt: skip
        at_least(f"drain, {n} process(es), default settings: ≥ 0.5x the bare loop",
                 _get(g, key, MAILQ_DEFAULTS), bare, 0.5)  # fmt: skip
    if "drain_4" in g:
        at_least("drain, 4 processes: mailq ≥ 2.5x PgQueuer (batch 100)",
                 _get(g, "drain_4", MAILQ), _get(g, "drain_4", "pgqueuer_b100"), 2.5)  # fmt: skip
    at_least("bulk enqueue ≥ 0.6x a bare COPY of the same rows",
             _get(g, "enqueue_bulk", MAILQ), _get(g, "enqueue_bulk", BARE), 0.6)  # fmt: skip
    seconds = _get(g, "campaign", MAILQ, "seconds")
    rss = _get(g, "campaign", MAILQ, "peak_rss_mb")
    add("campaign ≤ 10 s", f"{_n(seconds, 1)} s", _ratio(10.0, seconds), "10 s")
    add("campaign peak RSS < 300 MB", f"{_n(rss)} MB", _ratio(300.0, rss), "300 MB")
    sm = g.get("smtp") or {}
    at_least("SMTP end to end ≥ 0.9x bare aiosmtplib, same connections",
             sm.get(MAILQ), sm.get(BARE_SMTP), 0.9)  # fmt: skip
    during = _get(g, "vacuum", MAILQ, "rate_during_vs_before")
    add("drain during an idle-in-transaction ≥ 0.7x the drain before it", _x(during),
        _ratio(during, 0.7), "0.7x")  # fmt: skip
    p99 = _get(g, "vacuum", MAILQ, "claim_p99_during_vs_before")
    add("claim p99 during it ≤ 3x before", _x(p99), _ratio(3.0, p99), "≤ 3x")
    h = g.get("history") or {}
    add("drain with history ≥ 0.9x empty",
        f"{_n(h.get(HISTORY))} vs {_n(h.get(MAILQ))} emails/s = {_x(h.get('ratio'))}",
        _ratio(h.get("ratio"), 0.9), "0.9x")  # fmt: skip
    wake = (g.get("wakeup") or {}).get("by_system", {})
    peers_p99 = {s: v.get("p99_ms") for s, v in wake.items() if s != MAILQ and v.get("p99_ms")}
    mine = wake.get(MAILQ, {}).get("p99_ms")
    best = min(peers_p99.items(), key=lambda kv: kv[1]) if peers_p99 else None
    add("wake-up p99 ≤ the best peer's",
        f"{_n(mine, 1)} ms vs {best[0]} {_n(best[1], 1)} ms" if best else f"{_n(mine, 1)} ms",
        _ratio(best[1], mine) if best else None, "≤ 1.0x")  # fmt: skip
    return rows


def _x(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.2f}x"


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
        "summary": (summary_ := esp.with_ratios(summary(groups, results))),
        "targets": targets(summary_),
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
            cells += [
                _n(median_.get(figure), 1)
                for figure in ("drainers_cpu_us", "server_cpu_us", "wal_bytes")
            ]
        if any(c != "-" for c in cells):
            n = group.members[0].params["processes"]
            rows.append(f"| {n} | " + " | ".join(cells) + " |")
    if not rows:
        return []
    return [
        "",
        "CPU per email or row during the drains, in microseconds (drainer processes; the "
        "Postgres processes serving them), and WAL bytes per email or row (the cluster's: on "
        "a shared server, others' writes count too):",
        "",
        "| processes | mailq workers | their Postgres | mailq WAL | bare loops | their Postgres "
        "| bare WAL |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        *rows,
    ]


SYSTEM_LABELS = {
    MAILQ: "mailq",
    MAILQ_DEFAULTS: "mailq (default settings)",
    BARE: "bare SQL",
    BARE_BOUNDED: f"bare SQL, {CONCURRENCY} per commit",
    "pgqueuer": "PgQueuer (batch 10)",
    "pgqueuer_b100": "PgQueuer (batch 100)",
    "procrastinate": "Procrastinate",
}
SIDE_BY_SIDE = ("enqueue_bulk", "enqueue_one", "drain", "wakeup")


def _cell(group: Group, entry: Mapping[str, Any], system: str) -> str:
    if system not in entry:
        return ""
    if group.members[0].measure == "wakeup":
        figures = entry["by_system"][system]
        return " / ".join(_n(figures.get(k), 1) for k in ("p50_ms", "p95_ms", "p99_ms")) + " ms"
    unit = entry["units"][system]
    cell = f"{_n(entry[system])} {unit}"
    if group.members[0].measure == "enqueue_bulk" and system == BARE:
        cell += " (COPY)"
    return cell


def _side_by_side(doc: Mapping[str, Any], groups: Sequence[Group], options: Options) -> list[str]:
    by_group = doc["summary"]["groups"]
    shown = [g for g in groups if g.members[0].measure in SIDE_BY_SIDE and g.name in by_group]
    systems = [s for s in SYSTEM_LABELS if any(s in by_group[g.name] for g in shown)]
    if not shown:
        return []
    lines = [
        "| measure | " + " | ".join(SYSTEM_LABELS[s] for s in systems) + " | mailq / bare |",
        "| --- | " + " | ".join("---:" for _ in systems) + " | ---: |",
    ]
    for group in shown:
        entry = by_group[group.name]
        cells = [_cell(group, entry, s) for s in systems]
        lines.append(
            f"| {_label(group, options)} | " + " | ".join(cells) + f" | {_x(entry.get('ratio'))} |"
        )
    return lines


def _mailq_alone(doc: Mapping[str, Any], options: Options) -> list[str]:
    g = doc["summary"]["groups"]
    rows = []
    if "history" in g:
        h = g["history"]
        rows.append(
            f"| drain {options.emails:,}, 2 processes, with {options.history_emails:,} finished "
            f"emails in the database | {_n(h.get(HISTORY))} emails/s | {_n(h.get(MAILQ))} "
            f"emails/s (empty database) | {_x(h.get('ratio'))} |"
        )
    if "campaign" in g:
        c = g["campaign"]["by_system"][MAILQ]
        rows.append(
            f"| campaign of {options.campaign_recipients:,} recipients from an iterator | "
            f"{_n(c.get('seconds'), 1)} s, peak RSS {_n(c.get('peak_rss_mb'))} MB "
            f"({_n(c.get('rate'))} recipients/s) | | |"
        )
    if "dashboard" in g:
        d = g["dashboard"]["by_system"][MAILQ]
        rows.append(
            f"| dashboard pages with {options.history_emails:,} finished and "
            f"{options.dashboard_waiting:,} waiting emails (server time) | slowest page "
            f"{_n(d.get('slowest_page_ms'), 1)} ms, overview {_n(d.get('overview_ms'), 1)} ms | "
            f"SSE update {_n(d.get('sse_update_ms'), 1)} ms "
            f"({_n(d.get('sse_update_db_ms'), 1)} ms of queries) | |"
        )
    if "smtp" in g:
        sm = g["smtp"]
        rows.append(
            f"| SMTP end to end, {options.smtp_emails:,} emails, {options.smtp_processes} "
            f"processes x 4 connections, into {doc['environment'].get('smtp_sink', '?')} | "
            f"{_n(sm.get(MAILQ))} emails/s | {_n(sm.get(BARE_SMTP))} emails/s (bare aiosmtplib) "
            f"| {_x(sm.get('ratio'))} |"
        )
    if "vacuum" in g:
        v = g["vacuum"]["by_system"][MAILQ]
        rows.append(
            f"| drain, 2 processes, while a transaction idles {options.vacuum_hold_s:g} s "
            f"(held-back vacuum): rate / claim p99 | during {_n(v.get('rate_during'))} "
            f"emails/s, last quarter {_n(v.get('rate_during_end'))}, after "
            f"{_n(v.get('rate_after'))}; claim p99 {_n(v.get('claim_p99_ms_during'), 1)} ms "
            f"| before {_n(v.get('rate_before'))} emails/s, claim p99 "
            f"{_n(v.get('claim_p99_ms_before'), 1)} ms | {_x(v.get('rate_during_vs_before'))} "
            f"/ {_x(v.get('claim_p99_during_vs_before'))} |"
        )
    if not rows:
        return []
    return ["", "| measure | mailq | reference | ratio |", "| --- | ---: | ---: | ---: |", *rows]


def _bounded_lines(doc: Mapping[str, Any]) -> list[str]:
    """mailq at the default settings against the bare loop under the same bound."""
    g = doc["summary"]["groups"]
    drains = sorted((k for k in g if "bounded" in g[k]), key=lambda k: int(k[6:]))
    if not drains:
        return []
    cells = [
        f"{k[6:]} process(es) {_x(g[k]['bounded']['defaults_vs_bounded'])} "
        f"(that loop {_x(g[k]['bounded']['bounded_vs_bare'])} the bare loop)"
        for k in drains
    ]
    return [
        "",
        f"The default settings (at most {CONCURRENCY} emails per worker whose outcome is not "
        f"committed) against the bare loop under the same bound ({CONCURRENCY} rows per "
        f"commit, the next {CONCURRENCY} claimed meanwhile): " + "; ".join(cells) + ".",
    ]


def _targets_table(doc: Mapping[str, Any]) -> list[str]:
    rows = [
        f"| {t['target']} | {t['figure']} | {t['goal']} | "
        f"{'-' if t['score'] is None else format(t['score'], '.2f')} | "
        f"{'-' if t['met'] is None else ('yes' if t['met'] else 'no')} |"
        for t in doc.get("targets", [])
    ]
    return [
        "",
        "Targets of the hot-path issue (score = figure / target, ≥ 1 means met; - where the "
        "run did not measure it):",
        "",
        "| target | this run | target | score | met |",
        "| --- | --- | ---: | ---: | :---: |",
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
    peers_ = env.get("peers")
    installed = (
        ", ".join(f"{k} {v}" for k, v in peers_.items()) if isinstance(peers_, dict) else peers_
    )
    lines = [
        f"mailq bench, {doc['started_at']}: PostgreSQL {env.get('postgres_version', '?')}, "
        f"{env.get('cpus', '?')} CPUs, fsync={env.get('fsync', '?')}, {rounds}{load}; "
        f"peers: {installed}",
        "",
        *_side_by_side(doc, groups, options),
        *(
            _mailq_alone(doc, options)[1:]
            if not _side_by_side(doc, groups, options)
            else _mailq_alone(doc, options)
        ),
        *_targets_table(doc),
        *_bounded_lines(doc),
    ]
    lines += _cpu_table(doc, groups) + esp.markdown_lines(doc)
    s = doc["summary"]
    peer_counts = "; ".join(
        f"{SYSTEM_LABELS.get(k, k)}: {v['duplicates']} twice, {v['lost']} never"
        for k, v in s.get("peers", {}).items()
    )
    lines += [
        "",
        f"mailq: {s['duplicates']} emails handled twice, {s['lost']} never "
        f"(every drain and wake-up run); bare loop: {s['bare_duplicates']} twice, "
        f"{s['bare_lost']} never" + (f"; {peer_counts}." if peer_counts else "."),
        "Drain rate = items / (last finish recorded in the database - the moment the work was "
        "available to idle, connected processes). mailq / bare: the ratio of the medians. "
        "Wake-up: p50 / p95 / p99 from the enqueue call's return to the handler's start.",
    ]
    return "\n".join(lines) + "\n"
