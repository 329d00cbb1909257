"""Periodic duties every worker offers and one worker at a time performs (each batch in a
transaction holding the duty's advisory lock), one module per duty: take back the emails of
dead workers (`rescue`), forget long-dead workers (`forget_workers`), delete finished emails
past their retention (`prune`). `runner` runs them on their intervals.

Each duty has an interval constant, a batch limit, takes `now` (None: the database's clock;
tests pass a time instead of waiting for it) and emits a test signal after each run.
"""

from __future__ import annotations

from mailq.worker.duties.forget_workers import ForgetDeadWorkers
from mailq.worker.duties.prune import PRUNE_INTERVAL_S, PruneFinished
from mailq.worker.duties.rescue import RescueExpired
from mailq.worker.duties.runner import Duty, DutyRunner

__all__ = [
    "PRUNE_INTERVAL_S",
    "Duty",
    "DutyRunner",
    "ForgetDeadWorkers",
    "PruneFinished",
    "RescueExpired",
]
