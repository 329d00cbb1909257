"""`mailq bench --quick` keeps working: every figure is there, nothing sent twice or lost."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PROCESS_COUNTS = ("1", "2", "4")


@pytest.mark.timeout(300)
def test_quick_bench_measures_every_figure(pg_admin_url: str, tmp_path: Path) -> None:
    output = tmp_path / "bench.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILQ_")}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mailq.cli",
            "--database-url",
            pg_admin_url,
            "bench",
            "--quick",
            # Smaller than --quick's own numbers: the suite checks that every figure is
            # measured and adds up, not how fast (that is the bench's job).
            "--emails",
            "600",
            "--history-emails",
            "5000",
            "--campaign-recipients",
            "5000",
            "--output",
            str(output),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    doc = json.loads(output.read_text(encoding="utf-8"))
    groups = doc["summary"]["groups"]

    for group in ("enqueue_bulk", *(f"drain_{n}" for n in PROCESS_COUNTS)):
        assert groups[group]["mailq"] > 0, group
        assert groups[group]["bare"] > 0, group
        assert groups[group]["ratio"] > 0, group
    assert groups["enqueue_one"]["mailq"] > 0
    wakeup = groups["wakeup"]
    assert 0 < wakeup["p50_ms"] <= wakeup["p95_ms"] <= wakeup["p99_ms"] < 10_000

    summary = doc["summary"]
    assert (summary["duplicates"], summary["lost"]) == (0, 0)
    assert (summary["bare_duplicates"], summary["bare_lost"]) == (0, 0)
    drains = [m for m in doc["measurements"] if m["measure"] == "drain"]
    assert len([m for m in drains if m["system"] in ("mailq", "bare")]) == 2 * len(PROCESS_COUNTS)
    # And mailq at the default settings (16 sends in flight) beside each, and the bare loop
    # under the same bound (16 rows per commit), with the two compared.
    assert len([m for m in drains if m["system"] == "mailq_defaults"]) == len(PROCESS_COUNTS)
    assert len([m for m in drains if m["system"] == "bare_bounded"]) == len(PROCESS_COUNTS)
    for n in PROCESS_COUNTS:
        bounded = groups[f"drain_{n}"]["bounded"]
        assert bounded["defaults_vs_bounded"] > 0 and bounded["bounded_vs_bare"] > 0, n
    assert "against the bare loop under the same bound" in result.stdout
    for m in drains:
        (sample,) = m["samples"]
        assert sample["details"]["done"] == sample["details"]["count"], m["key"]

    assert "| drain 600, 4 processes |" in result.stdout
    assert "0 emails handled twice, 0 never" in result.stdout

    # Peers: measured where installed (the `bench` extra), else reported, not skipped.
    peers = doc["environment"]["peers"]
    assert set(peers) == {"pgqueuer", "procrastinate"}
    for name, version in peers.items():
        if version == "not installed":
            assert not any(m["system"].startswith(name) for m in doc["measurements"])
        else:
            assert groups["drain_4"][name if name != "pgqueuer" else "pgqueuer_b100"] > 0
    for counts in summary["peers"].values():
        assert counts == {"duplicates": 0, "lost": 0}

    # History, campaign, SMTP and the targets table.
    history = groups["history"]
    assert history["mailq"] > 0 and history["mailq_history"] > 0
    campaign = groups["campaign"]["by_system"]["mailq"]
    assert campaign["seconds"] > 0 and campaign["peak_rss_mb"] > 0
    if doc["environment"]["smtp_sink"] in ("smtp-sink", "aiosmtpd"):
        assert groups["smtp"]["mailq"] > 0 and groups["smtp"]["aiosmtplib"] > 0
    # ESP end to end: postmark:// next to a bare httpx client and to smtp://.
    esp = groups["esp"]
    assert esp["mailq"] > 0 and esp["httpx"] > 0
    assert esp["ratios"]["rate_vs_httpx"] > 0 and esp["ratios"]["cpu_vs_httpx"] > 0
    assert esp["by_system"]["mailq"]["drainers_cpu_us"] > 0
    if doc["environment"]["smtp_sink"] in ("smtp-sink", "aiosmtpd"):
        assert esp["mailq_smtp"] > 0 and esp["ratios"]["rate_vs_smtp"] > 0
    (mailq_esp,) = [m for m in doc["measurements"] if m["key"] == "esp/mailq"]
    assert mailq_esp["samples"][0]["details"]["esp_server"]["messages"] == 300
    assert "ESP end to end, 300 emails" in result.stdout
    # The held-back vacuum (a few seconds with --quick): every phase measured.
    vacuum = groups["vacuum"]["by_system"]["mailq"]
    for phase in ("before", "during", "during_end", "after"):
        assert vacuum[f"rate_{phase}"] > 0, phase
    assert vacuum["rate_during_vs_before"] > 0 and vacuum["claim_p99_ms_before"] > 0
    assert "held-back vacuum" in result.stdout
    # The hot-path issue's targets: two per drain, PgQueuer, bulk enqueue, the campaign's time
    # and memory, SMTP, the held-back vacuum's rate and claim p99, history, wake-up.
    assert len(doc["targets"]) == 2 * len(PROCESS_COUNTS) + 9
    assert "Targets of the hot-path issue" in result.stdout
    measured = {t["target"]: t for t in doc["targets"]}
    assert measured["drain, 4 process(es), default settings: ≥ 0.5x the bare loop"]["score"] > 0
    assert output.with_suffix(".md").read_text(encoding="utf-8").startswith("mailq bench")
