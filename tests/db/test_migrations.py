"""Migrations: one head, empty → head → base → head, and a schema check that refuses to run
on a schema this code does not know."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator

import asyncpg
import psycopg
import pytest
from alembic.script import ScriptDirectory

from mailq import SchemaMismatch
from mailq.db.schema import HEAD, REVISIONS, alembic_config, downgrade, ensure_current, migrate
from tests.support import postgres
from tests.support.processes import REPO


@pytest.fixture
def empty_database_url(pg_admin_url: str) -> Iterator[str]:
    name = f"mailq_e_{uuid.uuid4().hex[:16]}"
    url = postgres.create_database(pg_admin_url, name)
    try:
        yield url
    finally:
        postgres.drop_database(pg_admin_url, name)


def tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'mailq'"
        ).fetchall()
    return {r[0] for r in rows}


def test_one_head_and_the_code_knows_every_revision() -> None:
    scripts = ScriptDirectory.from_config(alembic_config("postgresql://unused"))
    assert scripts.get_heads() == [HEAD]
    chain = [rev.revision for rev in scripts.walk_revisions()]
    assert list(reversed(chain)) == list(REVISIONS)


def test_empty_to_head_to_base_to_head(empty_database_url: str) -> None:
    migrate(empty_database_url)
    expected = {
        "emails",
        "attempts",
        "worker_leases",
        "finished_counts",
        "queue_stats",
        "paused_kinds",
    }
    assert expected <= tables(empty_database_url)
    migrate(empty_database_url)  # a second run is a no-op
    downgrade(empty_database_url, "base")
    assert tables(empty_database_url) <= {"alembic_version"}
    migrate(empty_database_url)
    assert expected <= tables(empty_database_url)


def test_alembic_command_line_does_the_same(empty_database_url: str) -> None:
    env = {"MAILQ_DATABASE_URL": empty_database_url, "PATH": "/usr/bin:/bin"}
    alembic = [sys.executable, "-m", "alembic"]
    subprocess.run([*alembic, "upgrade", "head"], cwd=REPO, env=env, check=True)
    current = subprocess.run(
        [*alembic, "current"], cwd=REPO, env=env, check=True, capture_output=True, text=True
    )
    assert HEAD in current.stdout


async def test_workers_refuse_a_schema_they_do_not_know(
    empty_database_url: str, database_url: str
) -> None:
    conn = await asyncpg.connect(empty_database_url)
    try:
        with pytest.raises(SchemaMismatch, match="run `mailq migrate`"):
            await ensure_current(conn)
    finally:
        await conn.close()
    conn = await asyncpg.connect(database_url)
    try:
        await ensure_current(conn)
        await conn.execute("UPDATE mailq.alembic_version SET version_num = '9999_future'")
        with pytest.raises(SchemaMismatch, match="does not know"):
            await ensure_current(conn)
    finally:
        await conn.close()


def test_0003_operators_goes_down_and_up_alone(empty_database_url: str) -> None:
    migrate(empty_database_url)
    downgrade(empty_database_url, "0001_create_queue")
    assert "paused_kinds" not in tables(empty_database_url)
    assert "emails" in tables(empty_database_url)
    migrate(empty_database_url, "0003_operators")
    assert "paused_kinds" in tables(empty_database_url)


def test_0012_counts_the_recipients_campaigns_have_already(empty_database_url: str) -> None:
    """Open emails from the partial index, finished ones from their counts (which outlive
    pruned rows); afterwards the trigger counts what is added."""
    migrate(empty_database_url, "0011_bounce_policy")
    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO mailq.campaigns (id, name, kind, send_at, priority, max_attempts, "
            "content) VALUES (7, 'c', 'welcome', now(), 0, 5, '{}')"
        )
        conn.execute(
            "INSERT INTO mailq.emails (kind, status, to_address, message_id, content, "
            "campaign_id, attempts, finished_at) "
            "SELECT 'welcome', CASE WHEN g <= 3 THEN 'sent' ELSE 'waiting' END, "
            "'r' || g || '@x.org', '<' || g || '@x>', '{}', 7, (g <= 3)::integer, "
            "CASE WHEN g <= 3 THEN now() END FROM generate_series(1, 10) AS g"
        )
        # One sent email pruned: its count stays.
        conn.execute("DELETE FROM mailq.emails WHERE to_address = 'r1@x.org'")
    migrate(empty_database_url)
    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        counted = "SELECT sum(n) FROM mailq.campaign_recipient_counts WHERE campaign_id = 7"
        assert conn.execute(counted).fetchone() == (10,)
        conn.execute(
            "INSERT INTO mailq.emails (kind, to_address, message_id, content, campaign_id) "
            "VALUES ('welcome', 'new@x.org', '<new@x>', '{}', 7)"
        )
        assert conn.execute(counted).fetchone() == (11,)
        options = "SELECT reloptions FROM pg_class WHERE relname = 'attempts_finished_brin'"
        assert "autosummarize=on" in conn.execute(options).fetchone()[0]
    downgrade(empty_database_url, "0011_bounce_policy")
    assert "campaign_recipient_counts" not in tables(empty_database_url)


def test_0013_finds_sent_emails_by_message_id_in_a_btree_and_goes_back_to_the_hash(
    empty_database_url: str,
) -> None:
    indexes = (
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'mailq' "
        "AND indexname LIKE 'emails_message_id%'"
    )
    migrate(empty_database_url, "0012_dashboard_overview")
    migrate(empty_database_url)
    with psycopg.connect(empty_database_url) as conn:
        (found,) = conn.execute(indexes).fetchall()
    assert found[0] == "emails_message_id_sent_btree"
    assert 'COLLATE "C"' in found[1] and "WHERE (status = 'sent'::text)" in found[1]
    downgrade(empty_database_url, "0012_dashboard_overview")
    with psycopg.connect(empty_database_url) as conn:
        (found,) = conn.execute(indexes).fetchall()
    assert found[0] == "emails_message_id_sent_idx" and "USING hash" in found[1]


def test_0014_leaves_campaign_emails_out_of_the_open_address_index_and_back(
    empty_database_url: str,
) -> None:
    index = "SELECT indexdef FROM pg_indexes WHERE indexname = 'emails_open_address_idx'"
    migrate(empty_database_url)
    with psycopg.connect(empty_database_url) as conn:
        (definition,) = conn.execute(index).fetchone()
    assert "campaign_id IS NULL" in definition
    downgrade(empty_database_url, "0013_message_id_btree")
    with psycopg.connect(empty_database_url) as conn:
        (definition,) = conn.execute(index).fetchone()
    assert "campaign_id" not in definition and "'waiting'" in definition
