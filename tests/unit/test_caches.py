"""Caches bounded in bytes (issue 11, case 2): what clients send cannot pile up in memory."""

from __future__ import annotations

import gc
import tracemalloc

import pytest

from mailq import Email, InvalidEmail
from mailq.caches import BytesCache
from mailq.enqueue import build_rows
from mailq.kinds import BUILTIN_KINDS

MB = 1024 * 1024


def test_a_bytes_cache_keeps_at_most_its_bytes_and_the_newest_entries() -> None:
    cache: BytesCache[str] = BytesCache(1 * MB)
    for n in range(100):
        cache.put(f"{n:03d}" + "k" * 50_000, "value")
    assert cache.bytes <= 1 * MB
    assert 10 <= len(cache) < 100
    assert cache.get("099" + "k" * 50_000) == (True, "value")
    assert cache.get("000" + "k" * 50_000) == (False, None)
    cache.put("huge", "v" * MB)  # over an eighth of the cache: not kept at all
    assert cache.get("huge") == (False, None)


def test_unique_megabyte_inputs_leave_no_memory_behind() -> None:
    def refused(n: int, **fields: str) -> None:
        email = Email(**{"to": "ann@example.com", "subject": "Hi", "text": "Hi", **fields})
        with pytest.raises(InvalidEmail) as refusal:
            build_rows([email], default_from="mailq@example.com", kinds=BUILTIN_KINDS)
        assert len(str(refusal.value)) < 4 * MB, f"input {n}"

    tracemalloc.start()
    try:
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        for n in range(3):
            filler = f"{n}-" + "x" * (4 * MB)
            refused(n, to=f"Ann <{filler}@example.com>")
            refused(n, to=f"{filler}@example.com")
            refused(n, text=f"{filler} {{{{ missing }}}}")
            refused(n, html=f"<p>{filler} {{% if x %}}{{{{ missing }}}}{{% endif %}}</p>")
        gc.collect()
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert kept < 8 * MB, f"{kept / MB:.0f} MB kept after 12 refused inputs of 4 MB"
