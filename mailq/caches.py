"""Caches bounded in bytes, not entries.

A cache keyed by what a client sends (an address, a template's text) and capped by entry count
keeps up to that many of the client's largest inputs: 4,096 templates of 4 MB each are 16 GB.
`bytes_cache` keeps at most `max_bytes` of keys and values (strings counted by length, other
values by a fixed estimate), evicts the least recently used first, and does not keep at all
a single entry over an eighth of the whole. Exceptions are not cached.
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, Generic, ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")

# What a value that is not a string is counted as (a small object, a tuple of a few strings).
OBJECT_BYTES = 256


def size_of(value: object) -> int:
    """An estimate of what `value` keeps alive, in bytes (strings: their length)."""
    if isinstance(value, str | bytes):
        return len(value) + 64
    if isinstance(value, tuple | frozenset):
        return OBJECT_BYTES + sum(size_of(v) for v in value)
    return OBJECT_BYTES


class BytesCache(Generic[R]):
    """A least-recently-used mapping holding at most `max_bytes` (keys and values)."""

    def __init__(self, max_bytes: int, *, weight: Callable[[Hashable, Any], int] | None = None):
        self.max_bytes = max_bytes
        self._weight = weight or (lambda key, value: size_of(key) + size_of(value))
        self._entries: OrderedDict[Hashable, tuple[R, int]] = OrderedDict()
        self._lock = threading.Lock()
        self.bytes = 0

    def get(self, key: Hashable) -> tuple[bool, R | None]:
        # Without the lock: each OrderedDict call is atomic under the GIL, and a key evicted
        # between the two is only a miss.
        entries = self._entries
        entry = entries.get(key)
        if entry is None:
            return False, None
        # Not contextlib.suppress, which costs more than the lookup (this is on every send).
        try:  # noqa: SIM105
            entries.move_to_end(key)
        except KeyError:
            pass
        return True, entry[0]

    def put(self, key: Hashable, value: R) -> None:
        weight = self._weight(key, value)
        if weight > self.max_bytes // 8:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self.bytes -= old[1]
            self._entries[key] = (value, weight)
            self.bytes += weight
            while self.bytes > self.max_bytes:
                _, (_, dropped) = self._entries.popitem(last=False)
                self.bytes -= dropped

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.bytes = 0

    def __len__(self) -> int:
        return len(self._entries)


def bytes_cache(
    max_bytes: int, *, weight: Callable[[Hashable, Any], int] | None = None
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Memoise a function of hashable arguments in a BytesCache (`.cache` on the wrapper)."""

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        cache: BytesCache[R] = BytesCache(max_bytes, weight=weight)

        @functools.wraps(func)
        def cached(*args: P.args, **kwargs: P.kwargs) -> R:
            key: Hashable = (args, tuple(sorted(kwargs.items()))) if kwargs else args
            found, value = cache.get(key)
            if found:
                return value  # type: ignore[return-value]
            result = func(*args, **kwargs)
            cache.put(key, result)
            return result

        cached.cache = cache  # type: ignore[attr-defined]
        return cached

    return decorate
