"""The README's headline use, run as a user runs it: examples/transactional.py enqueues inside
the application's own transaction with asyncpg and with psycopg, and a rollback queues
nothing."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import asyncpg

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "transactional.py"


async def test_the_transactional_example_queues_exactly_what_commits(
    database_url: str, conn: asyncpg.Connection
) -> None:
    env = {**os.environ, "MAILQ_FROM": "Acme <hello@acme.example.com>"}
    env.pop("MAILQ_CONFIG", None)
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), database_url],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert re.fullmatch(r"asyncpg: signed up ann@example.com, email \d+ queued", lines[0])
    assert lines[1] == "asyncpg: ann@example.com is taken: rolled back, no email queued"
    assert re.fullmatch(r"psycopg: signed up bob@example.com, email \d+ queued", lines[2])
    assert lines[3] == "psycopg: carol@example.com's payment failed: rolled back, no email queued"
    assert lines[4] == "queued emails to: ann@example.com, bob@example.com"
    signups = await conn.fetch("SELECT email FROM signups ORDER BY id")
    assert [r["email"] for r in signups] == ["ann@example.com", "bob@example.com"]
    emails = await conn.fetch(
        "SELECT to_address, to_name, content->>'from' AS sender FROM mailq.emails ORDER BY id"
    )
    assert [tuple(r) for r in emails] == [
        ("ann@example.com", "Ann", "Acme <hello@acme.example.com>"),
        ("bob@example.com", "Bob", "Acme <hello@acme.example.com>"),
    ]


def test_the_readme_shows_the_example_as_it_is() -> None:
    readme = (REPO / "README.md").read_text()
    match = re.search(r"## Enqueue in your own transaction\n(.*?)\n## ", readme, re.S)
    assert match, "the README has no section on the transactional enqueue"
    blocks = re.findall(r"```python\n(.*?)```", match.group(1), re.S)
    assert blocks, "the section shows no code"
    source = EXAMPLE.read_text()
    for block in blocks:
        for line in block.splitlines():
            assert line.strip() == "" or line in source, f"not in the example: {line!r}"
