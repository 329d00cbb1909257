from __future__ import annotations

from datetime import UTC, datetime

import pytest

from mailq.errors import InvalidEmail
from mailq.wire import parse_send_at


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2030-01-02T03:04:05Z", datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2030-01-02t03:04:05.5+00:00", datetime(2030, 1, 2, 3, 4, 5, 500000, tzinfo=UTC)),
        ("2030-01-02 03:04:05.123456789z", datetime(2030, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)),
    ],
)
def test_rfc3339_date_times_are_read(text: str, expected: datetime) -> None:
    assert parse_send_at(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "2030-01-02",
        "20300102T030405Z",
        "2030-W01-1T00:00:00Z",
        "2030-02-30T00:00:00Z",
        "2030-01-02T03:04:05+25:00",
        "2030-01-02T03:04:05Z\n",
        "\uff12\uff10\uff13\uff10-01-02T03:04:05Z",  # full-width digits
        "tomorrow",
    ],
)
def test_anything_else_is_refused(text: str) -> None:
    with pytest.raises(InvalidEmail, match=r"^send_at: .*RFC 3339"):
        parse_send_at(text)


def test_a_missing_offset_is_named() -> None:
    with pytest.raises(InvalidEmail, match="time zone offset"):
        parse_send_at("2030-01-02T03:04:05")
