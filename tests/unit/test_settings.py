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


@pytest.mark.parametrize(
    "value",
    ["Acme <hello@acme.example.com>", "hello@acme.test", '"Acme, Inc." <hi@acme.example.com>'],
)
def test_mailq_from_is_a_mailbox(value: str) -> None:
    """Defects of the issue: a display name and `.test` were refused in MAILQ_FROM."""
    assert Settings.from_env({"MAILQ_FROM": value}).from_address == value


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("MAILQ_FROM", "Acme, Inc. <hi@acme.example.com>", "MAILQ_FROM: .* double quotes"),
        ("MAILQ_FROM", "hello", "MAILQ_FROM: 'hello' is not a valid mailbox"),
        ("MAILQ_FROM", "hello@acme.invalid", "MAILQ_FROM: .*special-use"),
        ("MAILQ_REDIRECT_ALL_TO", "staging", "MAILQ_REDIRECT_ALL_TO: 'staging' is not"),
        ("MAILQ_HELO_NAME", "not a name", "MAILQ_HELO_NAME: 'not a name' is not a host name"),
    ],
)
def test_a_bad_mailbox_setting_stops_at_start_naming_it(
    name: str, value: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env({name: value})


def test_the_helo_name_defaults_to_the_fqdn_and_can_be_set() -> None:
    assert Settings.from_env({}).helo_name is None  # aiosmtplib then says socket.getfqdn()
    assert Settings.from_env({"MAILQ_HELO_NAME": "mx1.acme.example.com"}).helo_name == (
        "mx1.acme.example.com"
    )
    assert Settings.from_env({"MAILQ_HELO_NAME": "[192.0.2.1]"}).helo_name == "[192.0.2.1]"
