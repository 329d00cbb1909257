"""The ESP measure (bench/esp.py): its place in the plan, and its bare httpx client posting full
Postmark batches into the Postmark-like server at a tiny size (the mailq members run in the
quick bench of tests/acceptance/test_bench.py)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest

from bench import esp, smtp
from bench.command import add_arguments, options_from_args, plan
from bench.plan import Context, Options
from mailq.errors import UsageError


def _options(*argv: str) -> Options:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return options_from_args(parser.parse_args(argv))


def test_the_esp_group_puts_postmark_beside_bare_httpx_and_smtp() -> None:
    options = _options("--only", "esp", "--esp-emails", "500", "--esp-latency-ms", "20")
    (group,) = plan(options)
    assert group.name == "esp"
    systems = ["mailq", "httpx", *(["mailq_smtp"] if smtp.sink_kind() else [])]
    assert [m.system for m in group.members] == systems
    assert all(
        m.params["emails"] == 500 and m.params["esp_latency_ms"] == 20 for m in group.members
    )
    with pytest.raises(UsageError):
        _options("--esp-latency-ms", "-1")


async def test_the_bare_client_posts_full_batches(tmp_path: Path) -> None:
    options = Options(esp_emails=120, concurrency=50, esp_latency_ms=5.0)
    ctx = Context(server=None, options=options, logs=tmp_path, env=dict(os.environ))  # type: ignore[arg-type]
    sample = await esp.bare_httpx(ctx)
    assert sample.counts == {"lost": 0}
    assert sample.figures["rate"] > 0 and sample.figures["drainers_cpu_us"] > 0
    tally = sample.details["esp_server"]
    # 120 messages in batches of the worker's concurrency (50): 50, 50 and 20.
    assert (tally["requests"], tally["messages"], tally["messages_per_request"]) == (3, 120, 40)
    assert tally["connections"] == 1
