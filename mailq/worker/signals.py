"""Test signals (River's testsignal): milestones of the worker a test can await.

A signal is inert unless a test enables it: the worker pays one `None` check per milestone.
A test passes `WorkerSignals.enabled()` to the Worker (or to a duty) and awaits, say,
`signals.rescued.wait()` instead of sleeping and hoping the duty has run by then.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")

WAIT_TIMEOUT_S = 10.0


class Signal(Generic[T]):
    """Values emitted at one milestone, queued for a test to take one by one."""

    __slots__ = ("_values",)

    def __init__(self) -> None:
        self._values: asyncio.Queue[T] | None = None

    def enable(self) -> Signal[T]:
        self._values = asyncio.Queue()
        return self

    @property
    def enabled(self) -> bool:
        return self._values is not None

    def emit(self, value: T) -> None:
        if self._values is not None:
            self._values.put_nowait(value)

    async def wait(self, timeout: float = WAIT_TIMEOUT_S) -> T:
        """The next value emitted (or one emitted since the last wait); TimeoutError if none
        comes within `timeout` seconds."""
        if self._values is None:
            raise RuntimeError("this signal is not enabled: pass WorkerSignals.enabled()")
        return await asyncio.wait_for(self._values.get(), timeout)


@dataclass(frozen=True, slots=True)
class WorkerSignals:
    """Each duty emits how many rows it handled in one run (0 included); the recorder emits
    how many outcomes one batch committed."""

    rescued: Signal[int] = field(default_factory=Signal)
    forgotten: Signal[int] = field(default_factory=Signal)
    pruned: Signal[int] = field(default_factory=Signal)
    recorded: Signal[int] = field(default_factory=Signal)

    @classmethod
    def enabled(cls) -> WorkerSignals:
        signals = cls()
        for name in cls.__dataclass_fields__:
            getattr(signals, name).enable()
        return signals
