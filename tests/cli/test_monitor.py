"""The monitor CLI on a database with known rows: tables, --json, and one line on stderr with
exit 2 for a bad id, kind or time (never a traceback)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest

from mailq import enqueue_sync
from mailq.cli.main import main
from tests.support.emails import campaign, welcome


@dataclass
class Known:
    queued: int  # welcome, due now
    scheduled: int  # search_engine, due tomorrow
    failed: int  # welcome, failed an hour ago with a 550
    old_failed: int  # portfolio_builder, failed three days ago
    sent: int  # search_engine, sent five days ago


@pytest.fixture(autouse=True)
def keep_logging() -> Iterator[None]:
    # The CLI configures logging for its process; give pytest its handlers back afterwards.
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def known(database_url: str) -> Known:
    with psycopg.connect(database_url, autocommit=True) as conn:
        ids = enqueue_sync(
            conn,
            welcome(1),
            campaign(2, send_at=_tomorrow(conn)),
            welcome(3, to="reject@example.com"),
            campaign(4, kind="portfolio_builder"),
            campaign(5),
        )
        known = Known(*ids)
        conn.execute(
            "UPDATE mailq.emails SET status = 'failed', attempts = 1, last_error = '550 no',"
            " finished_at = now() - interval '1 hour' WHERE id = %s",
            (known.failed,),
        )
        conn.execute(
            "INSERT INTO mailq.attempts (email_id, attempt, started_at, outcome, smtp_code,"
            " smtp_reply) VALUES (%s, 1, now(), 'failed', 550, '5.1.1 no such user')",
            (known.failed,),
        )
        conn.execute(
            "UPDATE mailq.emails SET status = 'failed', attempts = 8, last_error = 'timeout',"
            " finished_at = now() - interval '3 days' WHERE id = %s",
            (known.old_failed,),
        )
        conn.execute(
            "UPDATE mailq.emails SET status = 'sent', attempts = 1,"
            " finished_at = now() - interval '5 days' WHERE id = %s",
            (known.sent,),
        )
    return known


def _tomorrow(conn: psycopg.Connection[Any]) -> Any:
    row = conn.execute("SELECT now() + interval '1 day'").fetchone()
    assert row is not None
    return row[0]


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@pytest.fixture
def mailq(database_url: str, capsys: pytest.CaptureFixture[str]) -> Any:
    def run(*argv: str) -> Result:
        code = main(["--log-level", "WARNING", "--database-url", database_url, *argv])
        captured = capsys.readouterr()
        assert "Traceback" not in captured.err
        return Result(code, captured.out, captured.err)

    return run


def states(database_url: str) -> dict[int, str]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT id, mailq.email_state(status, run_at, attempts) FROM mailq.emails"
        ).fetchall()
    return {r[0]: r[1] for r in rows}


def one_line_exit_2(result: Result, fragment: str) -> None:
    assert result.code == 2
    assert result.out == ""
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert fragment in lines[0]


# -- status, pending, failed ---------------------------------------------------------------


def test_status_counts_every_kind_by_state(mailq: Any, known: Known) -> None:
    report = mailq("status", "--json").json()
    kinds = {k["kind"]: k for k in report["kinds"]}
    assert kinds["welcome"]["counts"]["queued"] == 1
    assert kinds["welcome"]["counts"]["failed"] == 1
    assert kinds["search_engine"]["counts"]["scheduled"] == 1
    assert kinds["search_engine"]["counts"]["sent"] == 1
    assert kinds["portfolio_builder"]["counts"]["failed"] == 1
    assert kinds["platform_complete"]["counts"] == dict.fromkeys(kinds["welcome"]["counts"], 0)
    assert kinds["welcome"]["oldest_due_age_s"] >= 0
    assert report["workers"] == [] and report["paused"] == []

    table = mailq("status")
    assert table.code == 0
    assert "Emails by kind and state" in table.out
    assert "welcome" in table.out and "Live workers: none" in table.out


def test_pending_lists_waiting_emails_due_first(mailq: Any, known: Known) -> None:
    report = mailq("pending", "--json").json()
    assert report["total"] == 2
    assert [e["id"] for e in report["emails"]] == [known.queued, known.scheduled]
    assert [e["state"] for e in report["emails"]] == ["queued", "scheduled"]
    only = mailq("pending", "--kind", "search_engine", "--json").json()
    assert [e["id"] for e in only["emails"]] == [known.scheduled] and only["total"] == 1
    table = mailq("pending", "--limit", "1")
    assert "user1@example.com" in table.out and "user2@example.com" not in table.out
    assert "Waiting emails: 2" in table.out


def test_failed_lists_failures_newest_first_with_the_smtp_reply(mailq: Any, known: Known) -> None:
    report = mailq("failed", "--json").json()
    assert [e["id"] for e in report["emails"]] == [known.failed, known.old_failed]
    assert report["emails"][0]["last_smtp_code"] == 550
    assert report["emails"][0]["last_error"] == "550 no"
    recent = mailq("failed", "--since", "1d", "--json").json()
    assert [e["id"] for e in recent["emails"]] == [known.failed]
    assert "reject@example.com" in mailq("failed").out
    one_line_exit_2(mailq("failed", "--since", "yesterday"), "'yesterday' is not a time")
    one_line_exit_2(mailq("failed", "--since", "2025-05-01T08:00:00"), "has no UTC offset")


# -- retry and cancel ----------------------------------------------------------------------


def test_retry_by_id(mailq: Any, known: Known, database_url: str) -> None:
    result = mailq("retry", str(known.failed), "--json")
    assert result.json() == {"retried": 1, "ids": [known.failed]}
    # Waiting again with attempts behind it: "retrying" in SPEC.md's words, due now.
    assert states(database_url)[known.failed] == "retrying"
    assert "retried 1 email" in mailq("retry", str(known.old_failed)).out


def test_retry_with_a_bad_id_changes_nothing(mailq: Any, known: Known, database_url: str) -> None:
    before = states(database_url)
    one_line_exit_2(mailq("retry", str(known.failed), "999999"), "no email has id 999999")
    one_line_exit_2(mailq("retry", str(known.sent)), f"email {known.sent} is sent")
    one_line_exit_2(mailq("retry", "12x"), "'12x' is not an email id")
    one_line_exit_2(mailq("retry"), "give email ids")
    one_line_exit_2(mailq("retry", "1", "--all-failed"), "not both")
    assert states(database_url) == before


def test_retry_by_kind_by_time_and_all(mailq: Any, known: Known, database_url: str) -> None:
    assert mailq("retry", "--kind", "portfolio_builder", "--json").json() == {"retried": 1}
    assert states(database_url)[known.old_failed] == "retrying"
    assert states(database_url)[known.failed] == "failed"
    assert mailq("retry", "--failed-since", "2h", "--json").json() == {"retried": 1}
    assert states(database_url)[known.failed] == "retrying"
    assert "nothing retried" in mailq("retry", "--all-failed").out
    one_line_exit_2(mailq("retry", "--kind", "Bad-Kind"), "'Bad-Kind' is not a kind name")


def test_cancel(mailq: Any, known: Known, database_url: str) -> None:
    result = mailq("cancel", str(known.scheduled), str(known.queued), "--json")
    assert result.json() == {"cancelled": 2, "ids": [known.scheduled, known.queued]}
    assert states(database_url)[known.queued] == "cancelled"
    one_line_exit_2(mailq("cancel", str(known.sent)), "only scheduled, queued, retrying")
    one_line_exit_2(mailq("cancel", "0"), "'0' is not an email id")
    one_line_exit_2(mailq("cancel"), "the following arguments are required")


# -- pause, resume, prune ------------------------------------------------------------------


def test_pause_and_resume_a_kind(mailq: Any, known: Known) -> None:
    assert mailq("pause", "welcome", "--json").json() == {
        "kind": "welcome",
        "paused": True,
        "changed": True,
    }
    assert "already paused" in mailq("pause", "welcome").out
    report = mailq("status", "--json").json()
    assert report["paused"] == ["welcome"]
    assert "welcome (paused)" in mailq("status").out
    assert "resumed welcome" in mailq("resume", "welcome").out
    assert mailq("resume", "welcome", "--json").json()["changed"] is False
    one_line_exit_2(mailq("pause", "welcom"), "unknown kind 'welcom'")
    one_line_exit_2(mailq("resume", "no such kind"), "is not a kind name")


def test_prune_deletes_only_what_is_past_the_retention(
    mailq: Any, known: Known, database_url: str
) -> None:
    assert mailq("prune", "--older-than", "4", "--json").json() == {
        "pruned": 1,
        "older_than_days": 4.0,
    }
    assert known.sent not in states(database_url)
    result = mailq("prune", "--older-than", "2")
    assert "pruned 1 emails" in result.out
    assert "pruning finished emails: 1/1" in result.err  # plain progress off a terminal
    assert set(states(database_url)) == {known.queued, known.scheduled, known.failed}
    report = mailq("status", "--json").json()
    kinds = {k["kind"]: k["counts"] for k in report["kinds"]}
    assert kinds["search_engine"]["sent"] == 0 and kinds["portfolio_builder"]["failed"] == 0


def test_bulk_enqueue_reports_progress_off_a_terminal(
    mailq: Any, database_url: str, tmp_path: Any
) -> None:
    lines = [
        json.dumps({"to": f"u{n}@example.com", "subject": "Hi", "text": "Hello"}) for n in range(25)
    ]
    source = tmp_path / "emails.jsonl"
    source.write_text("\n".join(lines) + "\n")
    result = mailq("enqueue", "--file", str(source))
    assert result.out.strip() == "queued 25 emails"
    assert "queueing emails: 25/25" in result.err
    one_line_exit_2(mailq("enqueue", "--file", str(tmp_path / "nope.jsonl")), "does not exist")


def test_the_database_url_may_follow_the_command(
    known: Known, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["--log-level", "WARNING", "pending", "--json", "--database-url", database_url]) == 0
    )
    assert json.loads(capsys.readouterr().out)["total"] == 2
