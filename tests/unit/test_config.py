"""MAILQ_CONFIG: every section read into policies; a bad file names the line and reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailq import ConfigError
from mailq.config import apply_tunables, load_config, load_settings
from mailq.delivery.replies import BUILTIN_QUIRKS
from mailq.kinds import LOST_HOLD
from mailq.settings import Settings

FULL = """
templates = "tpl"

[worker]
concurrency = 8
poll_interval = 2.5

[backend]
rate = 14
burst = 20
welcome_reserve = 4

[kinds.welcome]
concurrency = 4

[kinds.newsletter]
priority = 7
max_attempts = 3
backoff = { base = 60, cap = 600, jitter = 0.1 }
rate = 5
template = "newsletter"
lost = "hold"
list_unsubscribe = true

[unsubscribe]
mailto = "unsubscribe@example.com"

[[quirks]]
code = 550
match = "mailbox full"
outcome = "transient"
"""


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "tpl").mkdir(exist_ok=True)
    path = tmp_path / "mailq.toml"
    path.write_text(text)
    return path


def test_a_full_file_is_read_into_kinds_limits_and_quirks(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, FULL))
    welcome = config.kinds["welcome"]
    assert (welcome.priority, welcome.concurrency) == (0, 4)  # built-in priority kept
    news = config.kinds["newsletter"]
    assert (news.priority, news.max_attempts, news.lost, news.template) == (
        7,
        3,
        LOST_HOLD,
        "newsletter",
    )
    assert (news.retry.base_s, news.retry.cap_s, news.retry.jitter) == (60, 600, 0.1)
    assert news.rate_limit is not None and news.rate_limit.burst == 5  # burst defaults to rate
    assert config.backend_rate_limit is not None
    assert (config.backend_rate_limit.rate, config.backend_rate_limit.reserve) == (14, 4)
    assert config.quirks[0].match == "mailbox full"
    assert config.quirks[1:] == BUILTIN_QUIRKS
    assert config.unsubscribe_mailto == "unsubscribe@example.com"
    assert config.templates.folders[0] == tmp_path / "tpl"
    assert set(config.kinds) >= {"search_engine", "portfolio_builder", "platform_complete"}


def test_env_vars_win_over_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, FULL)
    settings, _ = load_settings({"MAILQ_CONFIG": str(path), "MAILQ_CONCURRENCY": "3"})
    assert settings.concurrency == 3 and settings.poll_interval_s == 2.5
    config = load_config(path)
    assert apply_tunables(Settings(), config, {}).concurrency == 8


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[kinds.news]\npriority = 12\n", ":2: kinds.news.priority: must be a whole number"),
        ("[kinds.news]\n\nlost = 'maybe'\n", ":3: kinds.news.lost: must be one of retry, hold"),
        ("[kinds.news]\nrate = 0\n", ":2: kinds.news.rate: must be a positive number"),
        ("[kinds.Bad]\n", ":1: kinds.Bad: not a kind name"),
        ("[kinds.news]\ncolour = 1\n", ":2: kinds.news.colour: unknown setting"),
        ("[backend]\nrate = 5\nburst = 5\nwelcome_reserve = 5\n", ":4: backend.welcome_reserve"),
        (
            "[[quirks]]\ncode = 454\noutcome = 'transient'\n\n[[quirks]]\ncode = 451\n"
            "outcome = 'sometimes'\n",
            ":7: quirks[1].outcome: must be one of transient, permanent",
        ),
        ("[[quirks]]\nmatch = '('\noutcome = 'permanent'\n", ":2: quirks[0].match"),
        ("[worker]\nconcurrency = 'many'\n", ":2: worker.concurrency: must be a whole number"),
        ("templates = 'missing'\n", ":1: templates:"),
        ("[dkim]\ndomain = 'example.com'\nselector = 's'\nprivate_key = 'no.pem'\n", ":4: dkim"),
        ("[kinds.news\n", "not valid TOML"),
        ("colour = 1\n", ":1: colour: unknown setting"),
    ],
)
def test_a_bad_file_fails_with_its_line_and_reason(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(path) in str(caught.value)
    assert expected in str(caught.value)


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings({"MAILQ_CONFIG": str(tmp_path / "nope.toml")})


def test_a_bad_file_stops_a_command_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from mailq.cli.main import main

    path = write(tmp_path, "[kinds.news]\nlost = 'never'\n")
    monkeypatch.setenv("MAILQ_CONFIG", str(path))
    monkeypatch.setenv("MAILQ_DATABASE_URL", "postgresql://nowhere/none")
    assert main(["worker"]) == 1
    assert f"{path}:2: kinds.news.lost: must be one of retry, hold" in capsys.readouterr().err


def test_a_declared_kind_is_transactional_unless_it_says_so_and_may_set_from(
    tmp_path: Path,
) -> None:
    """A defect of the issue: `[kinds.invoice]` got List-Unsubscribe by default."""
    config = load_config(
        write(
            tmp_path,
            '[kinds.invoice]\npriority = 1\nfrom = "Billing <billing@acme.example.com>"\n'
            "[kinds.digest]\nlist_unsubscribe = true\n[kinds.search_engine]\npriority = 6\n",
        )
    )
    assert config.kinds["invoice"].list_unsubscribe is False
    assert config.kinds["invoice"].from_address == "Billing <billing@acme.example.com>"
    assert config.kinds["digest"].list_unsubscribe is True
    assert config.kinds["search_engine"].list_unsubscribe is True  # built in: kept
    assert config.kinds["welcome"].list_unsubscribe is False


def test_the_feedback_sender_id_defaults_to_mailq(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, "")).feedback_sender_id == "mailq"
    config = load_config(write(tmp_path, '[campaigns]\nfeedback_sender_id = "acme-mail"\n'))
    assert config.feedback_sender_id == "acme-mail"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '[kinds.invoice]\nfrom = "Billing, Acme <b@acme.example.com>"\n',
            ":2: kinds.invoice.from",
        ),
        ('[campaigns]\nfeedback_sender_id = "abc"\n', ":2: campaigns.feedback_sender_id: 5 to 15"),
        ("[campaigns]\nsender = 1\n", ":2: campaigns.sender: unknown setting"),
    ],
)
def test_bad_new_settings_name_the_line(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        load_config(write(tmp_path, text))
