"""One configuration for every entry point: the Python API (asyncpg and psycopg), campaigns
and the CLI apply MAILQ_FROM and MAILQ_CONFIG the same way, and refuse an undeclared kind
with the same message. The Python API is run in a process of its own, as an application
runs it: it reads the environment once, on first use."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from mailq.cli.main import main
from mailq.kinds import BUILTIN_KINDS, KindPolicy
from mailq.validation import unknown_kind_message

REPO = Path(__file__).resolve().parents[2]
CONFIG = """
[kinds.invoice]
priority = 1
from = "Acme Billing <billing@acme.example.com>"

[kinds.digest]
list_unsubscribe = true
"""
MAILQ_FROM = '"Acme, Inc." <hello@acme.example.com>'

SCRIPT = r"""
import asyncio, json, sys
from datetime import UTC, datetime

import asyncpg, psycopg

import mailq
from mailq.campaigns import NewCampaign, create_campaign


def email(to, kind="welcome"):
    return mailq.Email(to=to, kind=kind, subject="Hi", text="Hello")


async def main(url):
    out = {}
    conn = await asyncpg.connect(url)
    out["asyncpg"] = await mailq.enqueue(
        conn, email("a@example.com"), email("b@example.com", "invoice")
    )
    try:
        await mailq.enqueue(conn, email("c@example.com", "newsletter"))
    except mailq.InvalidEmail as exc:
        out["refused"] = str(exc)
    campaign = NewCampaign("Digest", "digest", datetime.now(UTC), subject="Hi", text="Hello")
    created, _ = await create_campaign(conn, campaign, ["d@example.com"])
    out["campaign"] = created.id
    try:
        await create_campaign(conn, NewCampaign("N", "newsletter", datetime.now(UTC)), [])
    except mailq.InvalidEmail as exc:
        out["campaign_refused"] = str(exc)
    await conn.close()
    with psycopg.connect(url, autocommit=True) as sync:
        out["psycopg"] = mailq.enqueue_sync(sync, email("e@example.com", "invoice"))
    print(json.dumps(out))


asyncio.run(main(sys.argv[1]))
"""


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "mailq.toml"
    path.write_text(CONFIG)
    return path


@pytest.fixture(autouse=True)
def keep_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def expected_refusal(kind: str) -> str:
    kinds = {
        **BUILTIN_KINDS,
        "invoice": KindPolicy("invoice", 1),
        "digest": KindPolicy("digest", 5),
    }
    return unknown_kind_message(kind, kinds)


async def test_the_python_api_applies_mailq_from_and_mailq_config(
    database_url: str, conn: asyncpg.Connection, config_file: Path
) -> None:
    """A defect of the issue: mailq.enqueue stored mailq@localhost and @localhost
    Message-IDs whatever MAILQ_FROM said, and queued undeclared kinds."""
    env = {**os.environ, "MAILQ_FROM": MAILQ_FROM, "MAILQ_CONFIG": str(config_file)}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, database_url],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["refused"] == expected_refusal("newsletter")
    assert out["campaign_refused"] == expected_refusal("newsletter")
    rows = await conn.fetch(
        "SELECT id, kind, content->>'from' AS sender, message_id FROM mailq.emails"
        " WHERE campaign_id IS NULL ORDER BY id"
    )
    assert [r["id"] for r in rows] == [*out["asyncpg"], *out["psycopg"]]
    assert [(r["kind"], r["sender"]) for r in rows] == [
        ("welcome", MAILQ_FROM),
        ("invoice", "Acme Billing <billing@acme.example.com>"),
        ("invoice", "Acme Billing <billing@acme.example.com>"),
    ]
    assert all(r["message_id"].endswith("@acme.example.com>") for r in rows)
    campaign_from = await conn.fetchval(
        "SELECT content->>'from' FROM mailq.campaigns WHERE id = $1", out["campaign"]
    )
    assert campaign_from == MAILQ_FROM
    assert await conn.fetchval("SELECT count(*) FROM mailq.emails WHERE kind = 'newsletter'") == 0


def test_the_cli_applies_them_the_same_way(
    database_url: str,
    tmp_path: Path,
    config_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("MAILQ_DATABASE_URL", database_url)
    monkeypatch.setenv("MAILQ_FROM", MAILQ_FROM)
    monkeypatch.setenv("MAILQ_CONFIG", str(config_file))
    lines = tmp_path / "emails.jsonl"
    lines.write_text(
        json.dumps({"to": "Ann <a@example.com>", "subject": "Hi", "text": "x"})
        + "\n"
        + json.dumps({"to": "b@example.com", "kind": "invoice", "subject": "Hi", "text": "x"})
        + "\n"
    )
    assert main(["enqueue", "--file", str(lines)]) == 0
    assert "queued 2 emails" in capsys.readouterr().out
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        json.dumps({"to": "c@example.com", "kind": "newsletter", "subject": "s", "text": "t"})
    )
    assert main(["enqueue", "--file", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"mailq: line 1: {expected_refusal('newsletter')}"]
    csv = tmp_path / "people.csv"
    csv.write_text("email\nAnn <ann@example.com>\n")
    create = ["campaign", "create", "--csv", str(csv), "--name", "N", "--subject", "Hi",
              "--text", "x", "--send-at", "2030-01-01T09:00:00Z", "--kind"]  # fmt: skip
    assert main([*create, "newsletter"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].endswith(expected_refusal("newsletter")), err
    assert main([*create, "digest"]) == 0
    capsys.readouterr()
    import psycopg

    with psycopg.connect(database_url) as check:
        rows = check.execute(
            "SELECT e.kind, to_address, to_name, coalesce(e.content->>'from', c.content->>'from')"
            " FROM mailq.emails AS e LEFT JOIN mailq.campaigns AS c ON c.id = e.campaign_id"
            " ORDER BY e.id"
        ).fetchall()
    assert rows == [
        ("welcome", "a@example.com", "Ann", MAILQ_FROM),
        ("invoice", "b@example.com", None, "Acme Billing <billing@acme.example.com>"),
        ("digest", "ann@example.com", "Ann", MAILQ_FROM),
    ]


def test_a_bad_mailq_from_stops_a_command_at_start_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MAILQ_FROM", "Acme, Inc. <hello@acme.example.com>")
    monkeypatch.setenv("MAILQ_DATABASE_URL", "postgresql://nowhere/none")
    for command in (["enqueue", "--file", "-"], ["worker"], ["status"]):
        assert main(command) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("mailq: MAILQ_FROM: "), err
        assert "double quotes" in err[0]
