from __future__ import annotations

import re

import pytest

from mailq.db.queries import QUERIES, SqlLoadError, parse_blocks


def test_every_statement_is_named_noun_first_and_bound_not_formatted() -> None:
    assert QUERIES, "no statements loaded"
    for name, statement in QUERIES.items():
        assert name.split("_")[0] in {
            "email",
            "worker",
            "schema",
            "kind",
            "idempotency",
            "campaign",
            "suppression",
            "rate",
            "dashboard",
            "audit",
            "backend",
            "event",
            "bounce",
        }, name
        # No str.format placeholders; the empty JSON object literal '{}' is fine.
        assert "%s" not in statement and not re.search(r"\{\w*\}", statement.replace("'{}'", "")), (
            name
        )


def test_comments_are_stripped_and_text_kept() -> None:
    blocks = parse_blocks("-- name: a_b\n-- purpose\nSELECT 1;\n-- name: c_d\nSELECT $1\n", "x")
    assert blocks == {"a_b": "SELECT 1", "c_d": "SELECT $1"}


@pytest.mark.parametrize(
    "text",
    [
        "SELECT 1\n-- name: a_b\nSELECT 2",
        "-- name: a_b\nSELECT 1\n-- name: a_b\nSELECT 2",
        "-- name: a_b\n-- only a comment\n",
    ],
    ids=["text-before-first-name", "duplicate-name", "empty-statement"],
)
def test_malformed_files_fail_at_load(text: str) -> None:
    with pytest.raises(SqlLoadError):
        parse_blocks(text, "broken.sql")
