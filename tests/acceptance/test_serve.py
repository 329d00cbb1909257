"""`mailq serve`: the service with its workers, and a clear refusal before starting on a
schema it does not know."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import asyncpg
import httpx

from mailq.db.schema import HEAD
from tests.support.processes import REPO
from tests.support.service import service_env, uvicorn
from tests.support.waiting import eventually


async def test_mailq_serve_runs_the_service_with_its_workers(
    database_url: str, tmp_path: Path
) -> None:
    env = service_env(database_url, "null://", tmp_path / "home")
    env.pop("PROMETHEUS_MULTIPROC_DIR")
    command = [sys.executable, "-m", "mailq.cli", "serve", "--workers", "2", "--port", "{port}"]
    conn = await asyncpg.connect(database_url)
    try:
        with uvicorn(env, 2, tmp_path / "serve.log", *command) as (base_url, process):
            await eventually(
                lambda: conn.fetchval("SELECT count(*) = 2 FROM mailq.workers"),
                timeout=60,
                message="two embedded workers",
            )
            tokens = (tmp_path / "home" / "tokens").read_text()
            client = next(
                line.split("=", 1)[1]
                for line in tokens.splitlines()
                if line.startswith("MAILQ_API_TOKEN=")
            )
            async with httpx.AsyncClient(base_url=base_url) as http:
                created = await http.post(
                    "/v1/emails",
                    json={"to": "a@example.com", "subject": "s", "text": "t"},
                    headers={"Authorization": f"Bearer {client}"},
                )
                assert created.status_code == 201
        assert process.returncode == 0
        assert await conn.fetchval("SELECT count(*) FROM mailq.worker_leases") == 0
    finally:
        await conn.close()


async def test_mailq_serve_refuses_a_schema_it_does_not_know(
    database_url: str, tmp_path: Path, conn: asyncpg.Connection
) -> None:
    await conn.execute("UPDATE mailq.alembic_version SET version_num = '0001_create_queue'")
    env = service_env(database_url, "null://", tmp_path / "home")
    result = subprocess.run(
        [sys.executable, "-m", "mailq.cli", "serve", "--port", "1"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "mailq: the database schema is at 0001_create_queue, older than "
        f"{HEAD}: run `mailq migrate`"
    ]
