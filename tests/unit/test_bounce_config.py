"""`[bounces]`, `[kinds.X.bounces]` and `[webhooks.*]` of MAILQ_CONFIG: SPEC.md's defaults,
per-kind policies on top of the file's, and bad values named with their line."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailq.bounces.policy import DEFAULT_POLICY
from mailq.config import load_config
from mailq.errors import ConfigError


def test_defaults_and_a_kind_of_its_own(tmp_path: Path) -> None:
    assert (DEFAULT_POLICY.soft_threshold, DEFAULT_POLICY.soft_suppression_days) == (3, 30.0)
    assert (DEFAULT_POLICY.pause_min_sent, DEFAULT_POLICY.pause_complaint_rate) == (500, 0.003)
    path = tmp_path / "mailq.toml"
    path.write_text(
        '[bounces]\nfeedback_address = "FBL@bounces.example.com"\nsoft_threshold = 5\n\n'
        "[kinds.search_engine]\npriority = 6\n\n[kinds.search_engine.bounces]\n"
        "pause_hard_bounce_rate = 0.02\n\n"
        '[webhooks.postmark]\nusername = "u"\npassword = "p"\n'
    )
    config = load_config(path)
    assert config.feedback_address == "fbl@bounces.example.com"
    assert config.bounces.soft_threshold == 5
    own = config.kind_bounces["search_engine"]
    assert (own.soft_threshold, own.pause_hard_bounce_rate) == (5, 0.02)
    assert config.kinds["search_engine"].priority == 6
    assert dict(config.webhooks["postmark"]) == {"username": "u", "password": "p"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[bounces]\nhard = "delete"\n', "mailq.toml:2: bounces.hard: must be one of"),
        ("[bounces]\npause_complaint_rate = 3\n", "bounces.pause_complaint_rate: must be a ratio"),
        ("[bounces]\nsoft_treshold = 3\n", "bounces.soft_treshold: unknown setting"),
        ('[webhooks.sparkpost]\nkey = "k"\n', "webhooks.sparkpost: unknown provider"),
    ],
)
def test_bad_values_are_named(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "mailq.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        load_config(path)
