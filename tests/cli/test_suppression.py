"""`mailq suppress | unsuppress | suppressions` and `suppress --import` on known rows, and the
campaigns in `mailq status`: tables, --json, and one line on stderr with exit 2 for a bad
address, with nothing changed."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import psycopg

from mailq.campaigns import NewCampaign, create_campaign, pause_campaign
from tests.cli import test_monitor as base
from tests.cli.test_monitor import Known, one_line_exit_2, states

# The monitor tests' fixtures: a database with known rows, and `mailq(*argv)`.
keep_logging = base.keep_logging
known = base.known
mailq = base.mailq


def suppressed(database_url: str) -> dict[str, str]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT address, reason FROM mailq.suppressions").fetchall()
    return {r[0]: r[1] for r in rows}


def test_suppress_adds_and_cancels_waiting_emails(
    mailq: Any, known: Known, database_url: str
) -> None:
    report = mailq("suppress", "User1@Example.com", "new@example.com", "--json").json()
    assert report["added"] == 2 and report["cancelled"] == 1  # user1's queued welcome
    assert [a["address"] for a in report["addresses"]] == ["new@example.com", "user1@example.com"]
    assert all(
        a["added"] and a["reason"] == "suppressed by an operator" for a in report["addresses"]
    )
    assert states(database_url)[known.queued] == "cancelled"
    assert states(database_url)[known.scheduled] == "scheduled"

    again = mailq("suppress", "user1@example.com", "user2@example.com", "--reason", "bounced")
    assert again.code == 0
    assert "1 new address, 1 already on the list" in again.out
    assert "cancelled 1 email" in again.out  # user2's scheduled campaign email
    assert suppressed(database_url) == {
        "new@example.com": "suppressed by an operator",
        "user1@example.com": "suppressed by an operator",  # keeps its first reason
        "user2@example.com": "bounced",
    }
    assert states(database_url)[known.scheduled] == "cancelled"


def test_a_bad_address_changes_nothing(mailq: Any, known: Known, database_url: str) -> None:
    result = mailq("suppress", "ok@example.com", "not-an-address", "--json")
    one_line_exit_2(result, "'not-an-address' is not a valid email address")
    assert suppressed(database_url) == {}
    assert states(database_url)[known.queued] == "queued"
    one_line_exit_2(mailq("unsuppress", "a@@b"), "'a@@b' is not a valid email address")
    one_line_exit_2(mailq("suppress"), "give one or more addresses")
    one_line_exit_2(mailq("suppress", "a@example.com", "--import", "x.txt"), "not both")


def test_unsuppress_takes_addresses_off_the_list(mailq: Any, database_url: str) -> None:
    mailq("suppress", "a@example.com", "b@example.com", "--reason", "complaint")
    report = mailq("unsuppress", "A@example.com", "c@example.com", "--json").json()
    assert report == {
        "removed": 1,
        "addresses": [
            {"address": "a@example.com", "removed": True, "reason": "complaint"},
            {"address": "c@example.com", "removed": False, "reason": None},
        ],
    }
    assert suppressed(database_url) == {"b@example.com": "complaint"}
    table = mailq("unsuppress", "b@example.com")
    assert table.code == 0 and "1 of 1" in table.out and "complaint" in table.out
    assert suppressed(database_url) == {}


def test_suppressions_lists_in_address_order_with_paging(mailq: Any) -> None:
    mailq("suppress", "c@example.com", "a@example.com", "b@example.com")
    first = mailq("suppressions", "--limit", "2", "--json").json()
    assert [s["address"] for s in first["suppressions"]] == ["a@example.com", "b@example.com"]
    assert first["next_after"] == "b@example.com"
    rest = mailq("suppressions", "--after", "b@example.com", "--json").json()
    assert [s["address"] for s in rest["suppressions"]] == ["c@example.com"]
    assert rest["next_after"] is None
    table = mailq("suppressions", "--limit", "2")
    assert "a@example.com" in table.out and "c@example.com" not in table.out
    assert "mailq suppressions --after b@example.com" in table.out
    one_line_exit_2(mailq("suppressions", "--limit", "0"), "--limit")


def test_import_a_list_of_addresses(
    mailq: Any, known: Known, database_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "bounces.txt"
    path.write_text("# from the provider\nuser1@example.com\n\nX@example.com\nx@example.com\n")
    report = mailq("suppress", "--import", str(path), "--reason", "bounced", "--json").json()
    assert report["read"] == 3 and report["added"] == 2 and report["cancelled"] == 1
    assert suppressed(database_url) == {"user1@example.com": "bounced", "x@example.com": "bounced"}
    assert states(database_url)[known.queued] == "cancelled"


def test_import_a_csv_with_reasons(mailq: Any, database_url: str, tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_text("Email,Reason,date\na@example.com,hard bounce,2025-01-01\nb@example.com,,\n")
    result = mailq("suppress", "--import", str(path))
    assert result.code == 0
    assert "2 addresses read, 2 new on the list" in result.out
    assert "importing suppressions" in result.err  # the progress line (not a terminal)
    assert suppressed(database_url) == {"a@example.com": "hard bounce", "b@example.com": "imported"}


def test_an_import_with_a_bad_line_changes_nothing(
    mailq: Any, known: Known, database_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "list.txt"
    path.write_text("user1@example.com\nfine@example.com\nbroken@\n")
    one_line_exit_2(mailq("suppress", "--import", str(path)), f"{path} line 3:")
    assert suppressed(database_url) == {}
    assert states(database_url)[known.queued] == "queued"
    one_line_exit_2(mailq("suppress", "--import", str(tmp_path / "none")), "does not exist")


def test_status_shows_campaigns_in_progress(mailq: Any, database_url: str) -> None:
    async def make() -> tuple[int, int]:
        conn = await asyncpg.connect(database_url)
        try:
            later = datetime.now(UTC) + timedelta(days=1)
            news, _ = await create_campaign(
                conn,
                NewCampaign("news", "search_engine", later, subject="Hi", text="Hello"),
                ["a@example.com", "b@example.com"],
            )
            held, _ = await create_campaign(
                conn,
                NewCampaign("held", "portfolio_builder", later, subject="Hi", text="Hello"),
                ["c@example.com"],
            )
            await pause_campaign(conn, held.id)
            return news.id, held.id
        finally:
            await conn.close()

    news, held = asyncio.run(make())
    report = mailq("status", "--json").json()
    campaigns = {c["id"]: c for c in report["campaigns"]}
    assert list(campaigns) == [held, news]  # newest first
    assert campaigns[news]["name"] == "news" and campaigns[news]["status"] == "active"
    assert campaigns[news]["counts"]["scheduled"] == 2
    assert campaigns[held]["status"] == "paused"
    table = mailq("status")
    assert "Campaigns in progress: 2" in table.out and "news" in table.out
