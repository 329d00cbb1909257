"""The embedded PostgreSQL under MAILQ_HOME: what every command uses when nothing is
configured. Its data outlives the processes that use it; the last of them stops it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import psycopg

from mailq.db import embedded
from tests.support.processes import REPO
from tests.support.waiting import eventually


def test_start_stop_start_keeps_the_data(mailq_home: Path) -> None:
    home = mailq_home
    first = embedded.start(home)
    assert first.url.startswith("postgresql://") and "/mailq?" in first.url
    with psycopg.connect(first.url, autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (n int)")
        conn.execute("INSERT INTO kept VALUES (42)")
    first.stop()
    assert not (home / "pg" / "postmaster.pid").exists(), "the server still runs"
    again = embedded.start(home)
    try:
        with psycopg.connect(again.url) as conn:
            assert conn.execute("SELECT n FROM kept").fetchone() == (42,)
    finally:
        again.stop()


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILQ_")}
    env.update({"MAILQ_HOME": str(home), "PYTHONUNBUFFERED": "1"})
    return env


def _mailq(home: Path, *argv: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mailq.cli", *argv],
        env=_env(home),
        cwd=REPO,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_commands_and_a_worker_use_the_embedded_default(mailq_home: Path, tmp_path: Path) -> None:
    home = mailq_home
    migrated = _mailq(home, "migrate")
    assert migrated.returncode == 0, migrated.stderr
    assert "MAILQ_DATABASE_URL is not set: using the embedded PostgreSQL" in migrated.stderr
    email = {
        "to": "ann@example.com",
        "subject": "Hello {{ name }}",
        "text": "Hi",
        "context": {"name": "Ann"},
    }
    queued = _mailq(home, "enqueue", "--file", "-", stdin=json.dumps(email) + "\n")
    assert queued.returncode == 0, queued.stderr
    assert queued.stdout.strip() == "queued 1 emails"

    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "mailq.worker"],
            env=_env(home),
            cwd=REPO,
            stdout=out,
            stderr=out,
        )
    try:
        outbox = home / "outbox"

        def delivered() -> list[Path]:
            assert worker.poll() is None, log.read_text()
            return list(outbox.glob("*.eml"))

        asyncio.run(eventually(delivered, timeout=60, message="nothing in the outbox"))
        (eml,) = outbox.glob("*.eml")
        assert b"Subject: Hello Ann" in eml.read_bytes()

        # A second process attaches to the same server while the worker holds it.
        status = _mailq(home, "status", "--json")
        assert status.returncode == 0, status.stderr
        kinds = {k["kind"]: k["counts"] for k in json.loads(status.stdout)["kinds"]}
        assert kinds["welcome"]["sent"] == 1
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=60) == 0, log.read_text()
    assert "MAILQ_DATABASE_URL is not set" in log.read_text()
    # The worker was the last holder: the server stopped with it, and the data stayed.
    assert not (home / "pg" / "postmaster.pid").exists()
    status = _mailq(home, "status", "--json")
    kinds = {k["kind"]: k["counts"] for k in json.loads(status.stdout)["kinds"]}
    assert kinds["welcome"]["sent"] == 1
