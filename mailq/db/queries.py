"""Every SQL statement mailq runs, loaded once from the named blocks in sql/*.sql.

A block starts with ``-- name: <noun_verb>`` followed by a one-line ``-- purpose``. Statements
use Postgres-native ``$n`` placeholders so that one text serves asyncpg and psycopg.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from importlib import resources
from types import MappingProxyType
from typing import LiteralString

_NAME_LINE = re.compile(r"^-- name: ([a-z][a-z0-9_]*)\s*$", re.MULTILINE)


class SqlLoadError(Exception):
    """The SQL files of the package are malformed (a bug in mailq, not in your setup)."""


def parse_blocks(text: str, source: str) -> dict[str, str]:
    """Split one file's text into {name: statement}."""
    blocks: dict[str, str] = {}
    matches = list(_NAME_LINE.finditer(text))
    if text[: matches[0].start() if matches else len(text)].strip():
        raise SqlLoadError(f"{source}: text before the first '-- name:' line")
    for index, match in enumerate(matches):
        end = matches[index + 1].start() if index + 1 < len(matches) else len(text)
        body = text[match.end() : end].strip()
        statement = "\n".join(
            line for line in body.splitlines() if not line.lstrip().startswith("--")
        ).strip()
        if not statement:
            raise SqlLoadError(f"{source}: query {match.group(1)!r} is empty")
        if match.group(1) in blocks:
            raise SqlLoadError(f"{source}: query {match.group(1)!r} is defined twice")
        blocks[match.group(1)] = statement.rstrip(";")
    return blocks


def _load() -> Mapping[str, LiteralString]:
    queries: dict[str, LiteralString] = {}
    for entry in sorted((resources.files(__package__) / "sql").iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".sql"):
            continue
        for name, statement in parse_blocks(entry.read_text("utf-8"), entry.name).items():
            if name in queries:
                raise SqlLoadError(f"{entry.name}: query {name!r} is defined in two files")
            # The texts come from the package's own files, never from input.
            queries[name] = statement
    return MappingProxyType(queries)


QUERIES: Mapping[str, LiteralString] = _load()
