"""`mailq bench`: the project measures its own speed, next to a bare SQL loop (the ceiling).

Everything runs in one invocation on one Postgres server, a fresh database per measurement,
interleaved over rounds (median of 3 by default). See mailq/bench/plan.py for how a
measurement is described, so that peers and new measures can be added.
"""

from __future__ import annotations

from mailq.bench.command import add_arguments, run_from_args

__all__ = ["add_arguments", "run_from_args"]
