"""The HTTP edge's pure parts: strict JSON and metadata filters."""

from __future__ import annotations

import json

import pytest

from mailq.service.body import parse_json
from mailq.service.errors import ApiError
from mailq.service.schemas.emails import metadata_candidates


def test_plain_json_is_read() -> None:
    assert parse_json(b'{"a": [1, 2.5, "\\ud83d\\ude00"]}') == {"a": [1, 2.5, "\U0001f600"]}


@pytest.mark.parametrize(
    ("raw", "where"),
    [
        (b'{"a": NaN}', "body"),
        (b'{"a": -Infinity}', "body"),
        (b'{"a": 1e400}', "body"),
        (b'{"a": "\\ud800"}', "a"),
        (b'{"a": {"b": ["x", "\\udfff"]}}', "a.b[1]"),
        (b'{"\\ud800": 1}', "body"),
        (b"\xc3\x28", "body"),
        (b"   ", "body"),
    ],
)
def test_json_postgres_cannot_store_is_refused(raw: bytes, where: str) -> None:
    with pytest.raises(ApiError) as error:
        parse_json(raw)
    assert error.value.status == 400
    assert error.value.message.startswith(where + ":")


def test_metadata_filters_match_strings_and_typed_values() -> None:
    assert [json.loads(c) for c in metadata_candidates({"id": "42"})] == [
        {"id": "42"},
        {"id": 42},
    ]
    assert [json.loads(c) for c in metadata_candidates({"a": "x", "ok": "true"})] == [
        {"a": "x", "ok": "true"},
        {"a": "x", "ok": True},
    ]
    assert [json.loads(c) for c in metadata_candidates({"big": "1e999"})] == [{"big": "1e999"}]
