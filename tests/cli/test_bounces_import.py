"""`mailq bounces import FILE|-`: what an MTA's pipe transport runs. Exit 0 when the message
was recorded or carried nothing, 75 (EX_TEMPFAIL) when the database is unavailable; mail to
postmaster@ is kept as a file, not parsed."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from mailq.cli.main import main
from tests.bounces.conftest import BOUNCE_DOMAIN, TEST_KEY, sample


@pytest.fixture
def bounce_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in ("MAILQ_CONFIG", "MAILQ_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MAILQ_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MAILQ_BOUNCE_DOMAIN", BOUNCE_DOMAIN)
    monkeypatch.setenv("MAILQ_SECRET_KEY", TEST_KEY)
    return tmp_path


def test_import_records_a_dsn_once(
    database_url: str, bounce_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    message = bounce_env / "bounce.eml"
    message.write_bytes(sample("postfix_user_unknown.eml"))
    assert main(["bounces", "import", str(message), "--database-url", database_url]) == 0
    assert "1 event(s) recorded" in capsys.readouterr().out
    assert main(["bounces", "import", str(message), "--database-url", database_url]) == 0
    assert "1 duplicate(s)" in capsys.readouterr().out
    with psycopg.connect(database_url) as db:
        assert db.execute("SELECT type, subtype FROM mailq.events").fetchall() == [
            ("bounced", "hard")
        ]


def test_postmaster_mail_is_kept_not_parsed(database_url: str, bounce_env: Path) -> None:
    message = bounce_env / "bounce.eml"
    message.write_bytes(sample("postfix_user_unknown.eml"))
    argv = ["bounces", "import", str(message), "--database-url", database_url]
    assert main([*argv, "--recipient", f"postmaster@{BOUNCE_DOMAIN}"]) == 0
    kept = list((bounce_env / "home" / "postmaster").glob("*.eml"))
    assert [p.read_bytes() for p in kept] == [message.read_bytes()]
    with psycopg.connect(database_url) as db:
        assert db.execute("SELECT count(*) FROM mailq.events").fetchone() == (0,)


def test_an_unavailable_database_is_a_temporary_failure(
    bounce_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    message = bounce_env / "bounce.eml"
    message.write_bytes(sample("postfix_user_unknown.eml"))
    unreachable = "postgresql://postgres@127.0.0.1:1/none"
    assert main(["bounces", "import", str(message), "--database-url", unreachable]) == 75
    assert "try again later" in capsys.readouterr().err
