"""The README's two commands: CI runs exactly the test command the README gives, and the
run command installs what `mailq up` needs."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TEST_COMMAND = (
    "python3 -m venv .venv && .venv/bin/pip install -e '.[test]' && .venv/bin/python -m pytest -n 2"
)
RUN_COMMAND = "python3 -m venv .venv && .venv/bin/pip install . && .venv/bin/mailq up"


def test_ci_runs_the_readme_test_command() -> None:
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    assert f"    {TEST_COMMAND}\n" in readme
    assert f"\n{TEST_COMMAND}\n" in ci


def test_the_readme_gives_the_run_command() -> None:
    readme = (REPO / "README.md").read_text()
    assert f"    {RUN_COMMAND}\n" in readme


def test_the_configuration_table_names_every_setting_read_from_the_environment() -> None:
    readme = (REPO / "README.md").read_text()
    source = (REPO / "mailq" / "settings.py").read_text()
    names = set(re.findall(r'"(MAILQ_[A-Z_]+)"', source))
    assert names, "no settings found"
    missing = {n for n in names if f"| `{n}` |" not in readme}
    assert missing == set()


def test_the_configuration_file_example_loads(tmp_path: Path) -> None:
    from mailq.config import load_settings

    readme = (REPO / "README.md").read_text()
    match = re.search(r"```toml\n(.*?)```", readme, re.S)
    assert match, "the README has no MAILQ_CONFIG example"
    (tmp_path / "mailq.toml").write_text(match.group(1))
    (tmp_path / "templates").mkdir()
    subprocess.run(
        ["openssl", "genrsa", "-out", str(tmp_path / "dkim.pem"), "2048"],
        check=True,
        capture_output=True,
    )
    settings, config = load_settings({"MAILQ_CONFIG": str(tmp_path / "mailq.toml")})
    assert config.kinds["invoice"].lost == "hold"
    # A declared kind is transactional unless it says otherwise; it may set its From.
    assert config.kinds["invoice"].list_unsubscribe is False
    assert config.kinds["invoice"].from_address == "Acme Billing <billing@example.com>"
    assert config.feedback_sender_id == "acme-mail"
    assert config.kinds["search_engine"].concurrency == 8
    assert config.backend_rate_limit is not None and config.dkim is not None
    assert settings.lease_s == 30.0
