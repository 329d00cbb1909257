from __future__ import annotations

import argparse

import pytest

from bench import esp, peers, smtp
from bench.command import add_arguments, options_from_args, plan
from bench.plan import Group, Measurement, Options, Sample
from bench.report import document, markdown, measurement_result
from bench.stats import percentile
from mailq.errors import UsageError
from mailq.settings import CONCURRENCY


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


def test_percentile_interpolates_like_numpy() -> None:
    values = [1.0, 2.0, 3.0, 4.0]
    assert percentile(values, 0) == 1.0
    assert percentile(values, 50) == 2.5
    assert percentile(values, 100) == 4.0
    assert percentile([7.0], 99) == 7.0


def test_quick_options_are_small_and_overridable() -> None:
    options = options_from_args(_args("--quick", "--processes", "1,3", "--only", "drain"))
    assert options.repeat == 1 and options.emails < Options().emails
    assert options.processes == (1, 3)
    assert [g.name for g in plan(options)] == ["drain_1", "drain_3"]


def test_the_dashboard_measure_takes_its_size_and_a_history_filled_beforehand() -> None:
    options = options_from_args(
        _args("--only", "dashboard", "--dashboard-waiting", "5000", "--history-emails", "10000000",
              "--history-database", "mailq_bench_dash_big")
    )  # fmt: skip
    assert (options.dashboard_waiting, options.history_emails) == (5000, 10_000_000)
    assert options.history_database == "mailq_bench_dash_big"
    (group,) = plan(options)
    assert group.members[0].params == {"finished": 10_000_000, "waiting": 5000}
    with pytest.raises(UsageError, match="--history-database"):
        options_from_args(_args("--history-database", "postgres"))


def test_default_plan_pairs_each_drain_with_the_bare_loop() -> None:
    groups = plan(options_from_args(_args("--no-peers")))
    assert [g.name for g in groups] == [
        "enqueue_bulk",
        "enqueue_one",
        "drain_1",
        "drain_2",
        "drain_4",
        "wakeup",
        "history",
        "campaign",
        "dashboard",
        *(["smtp"] if smtp.sink_kind() else []),
        *(["esp"] if esp.available() else []),
        "vacuum",
    ]
    # Each drain: mailq as the bench runs it, mailq at the default settings, the bare loop,
    # and the bare loop under the default settings' bound (16 rows per commit, claiming ahead).
    assert [m.system for m in groups[2].members] == [
        "mailq",
        "mailq_defaults",
        "bare",
        "bare_bounded",
    ]
    assert groups[2].members[3].params == {
        "processes": 1,
        "emails": 50_000,
        "batch": CONCURRENCY,
        "ahead": True,
    }


def test_the_vacuum_hold_is_an_option_and_sets_the_phases_around_it() -> None:
    options = options_from_args(_args("--only", "vacuum", "--vacuum-hold-s", "20"))
    assert (options.vacuum_before_s, options.vacuum_hold_s, options.vacuum_after_s) == (
        5.0,
        20.0,
        10.0,
    )
    quick = options_from_args(_args("--quick"))
    assert quick.vacuum_hold_s < 10 and quick.vacuum_before_s >= 3
    with pytest.raises(UsageError):
        options_from_args(_args("--vacuum-hold-s", "0"))


def test_installed_peers_join_every_side_by_side_group(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(peers, "versions", lambda: {"pgqueuer": "1.6.0", "procrastinate": "3"})
    groups = {g.name: g for g in plan(options_from_args(_args()))}
    systems = ["mailq", "bare", "pgqueuer", "pgqueuer_b100", "procrastinate"]
    assert [m.system for m in groups["drain_4"].members] == [
        "mailq",
        "mailq_defaults",
        "bare",
        "bare_bounded",
        *systems[2:],
    ]
    assert [m.system for m in groups["enqueue_bulk"].members] == [
        "mailq",
        "bare",
        "pgqueuer",
        "procrastinate",
    ]
    assert [m.system for m in groups["wakeup"].members] == ["mailq", *systems[2:]]


def test_a_missing_peer_is_reported_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(peers.importlib.util, "find_spec", lambda name: None)
    assert peers.versions() == {"pgqueuer": "not installed", "procrastinate": "not installed"}
    assert peers.available() == ()


@pytest.mark.parametrize(
    "argv", [("--only", "nothing"), ("--processes", "1,x"), ("--processes", "0"), ("--emails", "0")]
)
def test_bad_values_are_usage_errors(argv: tuple[str, ...]) -> None:
    with pytest.raises(UsageError):
        options_from_args(_args(*argv))


async def _never(_ctx: object) -> Sample:
    raise AssertionError


def test_report_takes_medians_sums_counts_and_ratios() -> None:
    mailq = Measurement("drain/mailq/4", "drain", "mailq", "emails/s", {"processes": 4}, _never)
    bare = Measurement("drain/bare/4", "drain", "bare", "rows/s", {"processes": 4}, _never)
    groups = [Group("drain_4", (mailq, bare))]
    results = {
        mailq.key: measurement_result(
            mailq,
            [Sample({"rate": r}, counts={"duplicates": 0, "lost": 1}) for r in (10, 30, 20)],
        ),
        bare.key: measurement_result(bare, [Sample({"rate": r}) for r in (40, 40, 50)]),
    }
    doc = document(
        options=Options(),
        environment={"postgres_version": "15.2", "cpus": 2, "fsync": "on"},
        started_at="now",
        finished_at="later",
        groups=groups,
        results=results,
    )
    entry = doc["summary"]["groups"]["drain_4"]
    assert (entry["mailq"], entry["bare"], entry["ratio"]) == (20, 40, 0.5)
    assert entry["ratio_per_round"] == 0.4  # median of 10/40, 30/40, 20/50
    assert doc["summary"]["lost"] == 3
    table = markdown(doc, groups, Options())
    assert "| drain 50,000, 4 processes | 20 emails/s | 40 rows/s | 0.50x |" in table
    target = next(t for t in doc["targets"] if t["target"].startswith("drain, 4 process(es): "))
    assert target["score"] == pytest.approx(0.5 / 0.6) and target["met"] is False
    assert "| drain, 4 process(es): mailq ≥ 0.6x the bare loop | 20 vs 40/s = 0.50x |" in table
    # Not measured in this run: shown, with no score.
    defaults = next(t for t in doc["targets"] if "default settings" in t["target"])
    assert (defaults["score"], defaults["met"]) == (None, None)


def test_the_default_settings_are_compared_with_the_bare_loop_under_their_bound() -> None:
    units = {"mailq_defaults": "emails/s", "bare": "rows/s", "bare_bounded": "rows/s"}
    members = tuple(
        Measurement(f"drain/{system}/1", "drain", system, unit, {"processes": 1}, _never)
        for system, unit in units.items()
    )
    rates = {"mailq_defaults": 8_000, "bare": 40_000, "bare_bounded": 20_000}
    results = {
        m.key: measurement_result(
            m, [Sample({"rate": rates[m.system]}, counts={"duplicates": 0, "lost": 0})]
        )
        for m in members
    }
    groups = [Group("drain_1", members)]
    doc = document(
        options=Options(),
        environment={},
        started_at="now",
        finished_at="later",
        groups=groups,
        results=results,
    )
    bounded = doc["summary"]["groups"]["drain_1"]["bounded"]
    assert bounded == {"defaults_vs_bounded": 0.4, "bounded_vs_bare": 0.5}
    # The bounded loop counts as the bare loop's, not as a peer's.
    assert doc["summary"]["peers"] == {}
    table = markdown(doc, groups, Options())
    assert "| 8,000 emails/s | 40,000 rows/s | 20,000 rows/s |" in table
    assert "1 process(es) 0.40x (that loop 0.50x the bare loop)" in table
    # The target stays against the unbounded loop.
    target = next(t for t in doc["targets"] if "default settings" in t["target"])
    assert target["figure"] == "8,000 vs 40,000/s = 0.20x"
