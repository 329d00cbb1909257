"""The worker: claims due emails, sends them through a backend, records the outcomes, and
shares the periodic duties with the other workers.

`Worker` (worker.py) wires the roles, one module each: claimer (the claim loop), lanes
(sends), recorder (outcomes), control (LISTEN and the lease heartbeat), duties/ (rescue,
forget dead workers, prune), slots (the in-flight ledger), ratelimit, backoff (the one
retry-and-log helper), signals (milestones tests await).
"""

from __future__ import annotations

from mailq.worker.signals import WorkerSignals
from mailq.worker.worker import Worker

__all__ = ["Worker", "WorkerSignals"]
