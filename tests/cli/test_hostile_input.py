"""The CLI against hostile arguments and files (issue 11, cases 4, 7 and 8): exit 0 or 2, one
line on stderr for an error, never a traceback; what it prints is text, never markup, and
never a password."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailq import Settings, enqueue_sync
from mailq.cli.up import Up
from tests.cli import test_monitor as base
from tests.cli.test_monitor import Result, one_line_exit_2
from tests.support.emails import welcome

keep_logging = base.keep_logging
mailq = base.mailq

EMAIL = '{"to": "ann@example.com", "subject": "s", "text": "t", "metadata": {"x": %s}}\n'


def files(tmp_path: Path) -> dict[str, Path]:
    contents: dict[str, bytes] = {
        "not-utf8.jsonl": b'\xff\xfe{"to": 1}\n',
        "deep.jsonl": b"[" * 3000 + b"]" * 3000 + b"\n",
        "digits.jsonl": (EMAIL % ("9" * 5001)).encode(),
        "over-64-bits.jsonl": (EMAIL % (2**64)).encode(),
        "under-64-bits.jsonl": (EMAIL % (-(2**63) - 1)).encode(),
        "nan.jsonl": (EMAIL % "NaN").encode(),
        "latin1.csv": "email,name\nann@example.com,Ren\xe9e\n".encode("latin-1"),
        "header.csv": b"Email Address,Reason\nann@example.com,bounced\n",
        "empty": b"",
        "nul.jsonl": b'{"to": "ann@example.com", "subject": "s\\u0000", "text": "t"}\n',
    }
    paths = {}
    for name, data in contents.items():
        paths[name] = tmp_path / name
        paths[name].write_bytes(data)
    return paths


CAMPAIGN = ["--name", "n", "--kind", "search_engine", "--subject", "s", "--text", "t"]
CAMPAIGN += ["--send-at", "2030-01-01T00:00:00+00:00"]

# (argv, a fragment of the one line on stderr); {name} is a file of `files()`.
REFUSED = [
    (["failed", "--since", "9" * 20 + "d"], "too long ago"),
    (["prune", "--older-than", "1e400"], "a number of days"),
    (["prune", "--older-than", "inf"], "a number of days"),
    (["prune", "--older-than", "nan"], "a number of days"),
    (["prune", "--older-than", "-1"], "a number of days"),
    (["enqueue", "--file", "{not-utf8.jsonl}"], "line 1: not UTF-8"),
    (["enqueue", "--file", "{deep.jsonl}"], "nested too deeply"),
    (["enqueue", "--file", "{digits.jsonl}"], "too many digits"),
    (["enqueue", "--file", "{over-64-bits.jsonl}"], "metadata.x: integers are 64-bit"),
    (["enqueue", "--file", "{under-64-bits.jsonl}"], "metadata.x: integers are 64-bit"),
    (["enqueue", "--file", "{nan.jsonl}"], "NaN is not JSON"),
    (["enqueue", "--file", "{nul.jsonl}"], "NUL"),
    (["campaign", "create", "--csv", "{latin1.csv}", *CAMPAIGN], "not UTF-8"),
    (["pending", "--limit", "-5"], "a whole number from 1"),
    (["pending", "--limit", "9" * 5000], "a whole number from 1"),
    (["failed", "--limit", "0"], "a whole number from 1"),
    (["pending", "--kind", "nope"], "'nope' is not a configured kind"),
    (["failed", "--kind", "nope"], "'nope' is not a configured kind"),
    (["retry", "9" * 5000], "is not an email id"),
    (["cancel", "x" * 100_000], "is not an email id"),
    # An argument that is not UTF-8 (lone surrogates in Python), in mailq's and argparse's lines.
    (["failed", "--since", "\udcff"], "is not a time"),
    (["pending", "--limit", "\udcff"], "a whole number from 1"),
]


@pytest.mark.parametrize(("argv", "fragment"), REFUSED)
def test_a_hostile_argument_or_file_is_one_line_and_exit_2(
    mailq: Any, tmp_path: Path, argv: list[str], fragment: str
) -> None:
    paths = {name: str(path) for name, path in files(tmp_path).items()}
    result = mailq(*(paths[a[1:-1]] if a.startswith("{") else a for a in argv))
    one_line_exit_2(result, fragment)
    assert len(result.err) < 1000, "the error quotes the input briefly"


def test_a_spelt_out_csv_header_and_a_late_database_url(
    mailq: Any, tmp_path: Path, database_url: str
) -> None:
    header = files(tmp_path)["header.csv"]
    imported = mailq("suppress", "--import", str(header), "--json")
    assert imported.code == 0, imported.err
    assert imported.json()["read"] == 1 and imported.json()["added"] == 1
    migrated = mailq("migrate", "--database-url", database_url)
    assert migrated.code == 0 and "schema is at" in migrated.out


def test_what_the_cli_prints_is_text_never_markup(mailq: Any, database_url: str) -> None:
    error = "[/x] closes nothing, [bold]shouts[/bold] and \x1b[31mpaints\x1b[0m"
    with psycopg.connect(database_url, autocommit=True) as conn:
        (email_id,) = enqueue_sync(conn, welcome(1))
        conn.execute(
            "UPDATE mailq.emails SET status = 'failed', attempts = 1, last_error = %s,"
            " finished_at = now() WHERE id = %s",
            (error, email_id),
        )
    result = mailq("failed")
    assert result.code == 0, result.err
    out = " ".join(result.out.split())
    assert "[/x] closes nothing, [bold]shouts[/bold]" in out
    assert "\x1b" not in result.out and "\\x1b[31mpaints" in out


def test_mailq_up_and_backend_errors_print_no_password(
    mailq: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(
        database_url="postgresql://app:db-secret@db.example.com/mail",
        backend="smtp://relay-user:smtp-secret@relay.example.com:587",
        home=tmp_path,
        api_tokens=("client-token",),
        admin_tokens=("admin-token",),
    )
    Up(settings)._print_summary(settings.database_url or "", None)
    printed = capsys.readouterr().out
    assert "db-secret" not in printed and "smtp-secret" not in printed
    assert "relay-user" not in printed and "app:" not in printed
    assert "postgresql://***@db.example.com/mail" in printed
    assert "smtp://***@relay.example.com:587" in printed
    # A bad MAILQ_BACKEND, reported by the command that reads it.
    bad = "smtp://relay-user:smtp-secret@relay.example.com:notaport"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MAILQ_BACKEND", bad)
        result = mailq("worker", "--concurrency", "1")
    assert result.code != 0
    assert "smtp-secret" not in result.err and "relay-user" not in result.err
    assert "smtp://***@relay.example.com:notaport" in result.err


HOSTILE = [
    "",
    "-",
    "-1",
    "0",
    "1e400",
    "inf",
    "nan",
    "9" * 30,
    "9" * 5000,
    "[/x]",
    "[bold]x",
    "\x00",
    "\x1b[31m",
    "a@@b",
    "x" * 5000 + "@example.com",
    "2025-13-45",
    "99999999999d",
    "nope",
    "welcome",
    "\udcff",
    "--json",
]
COMMANDS = [
    ["status"],
    ["pending"],
    ["failed"],
    ["retry"],
    ["cancel"],
    ["pause"],
    ["resume"],
    ["prune"],
    ["suppress"],
    ["unsuppress"],
    ["suppressions"],
    ["campaign", "create"],
    ["enqueue"],
]
OPTIONS = ["--kind", "--limit", "--since", "--older-than", "--failed-since", "--reason", "--file"]
OPTIONS += ["--import", "--csv", "--after", "--all-failed"]


@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    command=st.sampled_from(COMMANDS),
    rest=st.lists(
        st.sampled_from(OPTIONS) | st.sampled_from(HOSTILE) | st.text(max_size=12), max_size=5
    ),
)
def test_fuzzed_arguments_exit_0_or_2_with_one_line(
    mailq: Any, command: list[str], rest: list[str]
) -> None:
    result: Result = mailq(*command, *rest)
    assert result.code in (0, 2), (command, rest, result.err)
    if result.code == 2:
        assert len(result.err.strip().splitlines()) == 1, (command, rest, result.err)
