from __future__ import annotations

from pathlib import Path

import pytest

from mailq.errors import ConfigError
from mailq.settings import Settings


def test_defaults_match_the_spec(tmp_path: Path) -> None:
    settings = Settings.from_env({"MAILQ_HOME": str(tmp_path)})
    assert settings.poll_interval_s == 5.0
    assert settings.lease_s == 30.0
    assert settings.heartbeat_interval_s == 6.0
    assert settings.concurrency == 16
    assert settings.backend_url == f"file://{tmp_path.resolve()}/outbox"
    assert settings.from_address == "mailq@localhost"


def test_tokens_are_comma_separated_for_rotation() -> None:
    settings = Settings.from_env({"MAILQ_API_TOKEN": "a, b,,c"})
    assert settings.api_tokens == ("a", "b", "c")


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("MAILQ_POLL_INTERVAL", "soon", "MAILQ_POLL_INTERVAL must be a number"),
        ("MAILQ_CONCURRENCY", "2.5", "MAILQ_CONCURRENCY must be a whole number"),
        ("MAILQ_CONCURRENCY", "0", "MAILQ_CONCURRENCY must be a whole number from 1"),
        ("MAILQ_LEASE", "0.1", "MAILQ_LEASE must be at least 1 second"),
        ("MAILQ_DATABASE_URL", "mysql://x", "must start with postgresql://"),
        ("MAILQ_EMBEDDED_WORKER", "maybe", "MAILQ_EMBEDDED_WORKER must be 1 or 0"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env({name: value})
