"""The benchmark's own SQL (the bare loop's table and what the bench reads back), kept as
named blocks in bench.sql and loaded like mailq's queries, but apart from them: none of it
is part of the queue."""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources
from types import MappingProxyType
from typing import LiteralString

from mailq.db.queries import parse_blocks


def _load() -> Mapping[str, LiteralString]:
    text = resources.files(__package__).joinpath("bench.sql").read_text("utf-8")
    # The texts come from the package's own file, never from input.
    blocks: dict[str, LiteralString] = dict(parse_blocks(text, "bench.sql"))
    return MappingProxyType(blocks)


BENCH_QUERIES: Mapping[str, LiteralString] = _load()
