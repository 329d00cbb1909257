"""The worker: claims due emails, sends them through a backend, records the outcomes, and
shares the periodic duties with the other workers."""

from __future__ import annotations

from mailq.worker.worker import Worker

__all__ = ["Worker"]
