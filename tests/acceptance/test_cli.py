"""The `mailq` command as a user runs it: exit codes, one-line errors, nothing half-written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import asyncpg

from mailq.db.schema import HEAD
from tests.support.processes import REPO


def mailq(*args: str, database_url: str | None = None, stdin: str | None = None):  # type: ignore[no-untyped-def]
    env = {"PATH": "/usr/bin:/bin", "HOME": str(REPO)}
    if database_url:
        env["MAILQ_DATABASE_URL"] = database_url
    return subprocess.run(
        [sys.executable, "-m", "mailq.cli", *args],
        cwd=REPO,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def lines(*emails: dict[str, object]) -> str:
    return "".join(json.dumps(e) + "\n" for e in emails)


EMAIL = {"to": "ann@example.com", "subject": "Hi {{ n }}", "text": "Hello", "context": {"n": 1}}


def test_migrate_twice_is_a_no_op(database_url: str) -> None:
    first = mailq("migrate", database_url=database_url)
    second = mailq("migrate", database_url=database_url)
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert f"schema is at {HEAD}" in second.stdout


async def test_enqueue_from_a_file_and_from_stdin(
    database_url: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    source = tmp_path / "emails.jsonl"
    source.write_text(lines(*[dict(EMAIL, to=f"u{i}@example.com") for i in range(1200)]))
    from_file = mailq("enqueue", "--file", str(source), database_url=database_url)
    assert from_file.returncode == 0, from_file.stderr
    assert from_file.stdout.strip() == "queued 1200 emails"
    from_stdin = mailq("enqueue", "--file", "-", database_url=database_url, stdin=lines(EMAIL))
    assert from_stdin.stdout.strip() == "queued 1 emails"
    assert await conn.fetchval("SELECT count(*) FROM mailq.emails") == 1201


async def test_a_bad_line_is_one_error_line_exit_2_and_nothing_queued(
    database_url: str, conn: asyncpg.Connection
) -> None:
    for bad, expected in [
        (lines(EMAIL, dict(EMAIL, to="nope")), "line 2: to:"),
        (lines(EMAIL) + "{not json\n", "line 2: not JSON"),
        (lines(EMAIL, dict(EMAIL, send_at="tomorrow")), "line 2: send_at:"),
        (lines(dict(EMAIL, surprise=1)), "line 1: surprise: unknown field"),
    ]:
        result = mailq("enqueue", "--file", "-", database_url=database_url, stdin=bad)
        assert result.returncode == 2
        assert result.stderr.count("\n") == 1 and expected in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    assert await conn.fetchval("SELECT count(*) FROM mailq.emails") == 0


def test_a_missing_file_and_bad_flags_are_usage_errors(database_url: str) -> None:
    missing = mailq("enqueue", "--file", "/nonexistent.jsonl", database_url=database_url)
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    bad_kinds = mailq("worker", "--kinds", "Not A Kind", database_url=database_url)
    assert bad_kinds.returncode == 2 and "--kinds" in bad_kinds.stderr
    bad_env = subprocess.run(
        [sys.executable, "-m", "mailq.worker"],
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "MAILQ_CONCURRENCY": "lots"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad_env.returncode != 0
    assert "MAILQ_CONCURRENCY must be a whole number" in bad_env.stderr
    assert "Traceback" not in bad_env.stderr


def test_an_unreachable_database_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    source = tmp_path / "one.jsonl"
    source.write_text(lines(EMAIL))
    for command in (["worker"], ["migrate"], ["enqueue", "--file", str(source)]):
        result = mailq(*command, database_url="postgresql://nobody@127.0.0.1:1/none")
        assert result.returncode == 1, command
        assert result.stderr.startswith("mailq: cannot reach the queue's database"), command
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
