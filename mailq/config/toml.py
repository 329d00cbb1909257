"""The TOML values of MAILQ_CONFIG checked with the path they sit at, and the line of the file
a path is on: a Problem names where it is (`kinds.news.rate`), load_config adds the line."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, TypeAlias

# Where a value sits in the file: the keys and array indexes that lead to it.
Where: TypeAlias = tuple[str | int, ...]


class Problem(Exception):
    """A bad value at `where`: load_config turns it into a ConfigError with the file's line."""

    def __init__(self, where: Where, reason: str) -> None:
        super().__init__(reason)
        self.where = where
        self.reason = reason


def table(value: object, where: Where) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise Problem(where, "must be a table")
    return value


def known(table: Mapping[str, Any], names: set[str] | frozenset[str], where: Where) -> None:
    """Refuse a key of `table` that is not one of `names` (a typo is not ignored)."""
    for key in table:
        if key not in names:
            raise Problem((*where, key), f"unknown setting (known: {', '.join(sorted(names))})")


def string(value: object, where: Where) -> str:
    if not isinstance(value, str) or not value.strip():
        raise Problem(where, "required, a non-empty string")
    return value.strip()


def number(
    table: Mapping[str, Any],
    key: str,
    where: Where,
    default: float,
    *,
    whole: bool = False,
) -> float:
    if key not in table:
        return default
    value = table[key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Problem((*where, key), "must be a whole number" if whole else "must be a number")
    if whole and not isinstance(value, int):
        raise Problem((*where, key), "must be a whole number")
    return float(value)


def line_of(text: str, where: Where) -> int | None:
    """The line a setting is on: the deepest table header of its path, then its key there."""
    lines = text.splitlines()
    headers: list[tuple[int, tuple[str, ...]]] = []
    for at, line in enumerate(lines):
        match = re.match(r"^\s*\[\[?\s*([^\]]+?)\s*\]", line)
        if match:
            names = tuple(p.strip().strip('"') for p in match.group(1).split("."))
            headers.append((at, names))
    strings = [p for p in where if isinstance(p, str)]
    index = next((p for p in where if isinstance(p, int)), 0)
    for depth in range(len(strings), 0, -1):
        hits = [n for n, names in headers if names == tuple(strings[:depth])]
        if len(hits) > index:
            start = hits[index]
            rest = strings[depth:]
            if not rest:
                return start + 1
            return _key_line(lines, start + 1, rest[0]) or start + 1
    if strings:
        first_header = headers[0][0] if headers else len(lines)
        return _key_line(lines[:first_header], 0, strings[0])
    return None


def _key_line(lines: list[str], start: int, key: str) -> int | None:
    pattern = re.compile(r"^\s*\"?" + re.escape(key) + r"\"?\s*=")
    for at in range(start, len(lines)):
        if at > start and lines[at].lstrip().startswith("["):
            return None
        if pattern.match(lines[at]):
            return at + 1
    return None
