"""What operators type (ids, times), how durations read, and the tokens `mailq up` prints."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mailq.cli.display import age
from mailq.cli.options import email_ids, moment
from mailq.cli.up import _parse_tokens, read_tokens
from mailq.errors import ConfigError, UsageError
from mailq.settings import Settings

NOW = datetime(2025, 5, 1, 12, 0, tzinfo=UTC)


def test_email_ids_are_positive_whole_numbers() -> None:
    assert email_ids(["1", "42"]) == [1, 42]
    for bad in ["0", "-3", "1.5", "abc", "", str(2**63)]:
        with pytest.raises(UsageError, match="is not an email id"):
            email_ids([bad])


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("90s", NOW - timedelta(seconds=90)),
        ("30m", NOW - timedelta(minutes=30)),
        ("6h", NOW - timedelta(hours=6)),
        ("2d", NOW - timedelta(days=2)),
        ("2025-04-30", datetime(2025, 4, 30, tzinfo=UTC)),
        ("2025-04-30T08:00:00+02:00", datetime(2025, 4, 30, 6, 0, tzinfo=UTC)),
        ("2025-04-30T08:00:00Z", datetime(2025, 4, 30, 8, 0, tzinfo=UTC)),
    ],
)
def test_times(raw: str, expected: datetime) -> None:
    assert moment(raw, NOW) == expected


@pytest.mark.parametrize(
    ("raw", "message"), [("soon", "is not a time"), ("2025-04-30T08:00", "no UTC offset")]
)
def test_bad_times(raw: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        moment(raw, NOW)


def test_ages_read_like_people_write_them() -> None:
    assert [age(s) for s in (None, 5, 65, 7300, 200000)] == ["-", "5s", "1m 05s", "2h 01m", "2d 7h"]


def test_tokens_file_in_json_or_lines(tmp_path: Path) -> None:
    assert _parse_tokens('{"api_tokens": ["c1", "c2"], "admin_tokens": ["a1"]}') == {
        "client": "c1",
        "admin": "a1",
    }
    assert _parse_tokens("MAILQ_API_TOKEN=c1,c2\nMAILQ_ADMIN_TOKEN=a1\n") == {
        "client": "c1",
        "admin": "a1",
    }
    settings = Settings.from_env({"MAILQ_HOME": str(tmp_path), "MAILQ_API_TOKEN": "env"})
    (tmp_path / "tokens").write_text("client: c1\nadmin: a1\n")
    assert read_tokens(settings) == ("env", "a1")


def test_retention_is_configurable() -> None:
    assert Settings.from_env({}).retention_days == 14.0
    assert Settings.from_env({"MAILQ_RETENTION_DAYS": "3.5"}).retention_days == 3.5
    with pytest.raises(ConfigError, match="MAILQ_RETENTION_DAYS"):
        Settings.from_env({"MAILQ_RETENTION_DAYS": "0"})
