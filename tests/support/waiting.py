"""Waiting without sleeping and hoping: poll a condition until a generous deadline.

The one deadline helper of the tests: a check that is a coroutine function (a query) or a
plain function (a look at an in-process server) alike.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def eventually(
    check: Callable[[], Awaitable[T] | T],
    *,
    timeout: float = 10.0,
    interval: float = 0.05,
    message: str = "condition not met",
) -> T:
    """Call `check()` (awaiting it if it returns an awaitable) until it returns something
    truthy, and return that; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value  # type: ignore[return-value]
        if time.monotonic() > deadline:
            raise AssertionError(f"{message} within {timeout}s (last value: {value!r})")
        await asyncio.sleep(interval)
