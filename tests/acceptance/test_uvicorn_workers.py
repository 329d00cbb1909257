"""`uvicorn service.app:app --workers 4` with embedded workers, against a real SMTP server:
2,000 emails posted over HTTP from concurrent clients are each received exactly once."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import asyncpg
import httpx

from tests.support.service import service_env, uvicorn
from tests.support.smtp import SmtpSink
from tests.support.waiting import eventually

CLIENT, ADMIN = "acceptance-client", "acceptance-admin"
EMAILS = 2000
CLIENTS = 20
PROCESSES = 4


async def _post_all(base_url: str) -> list[int]:
    ids: list[int] = []
    numbers = iter(range(EMAILS))
    headers = {"Authorization": f"Bearer {CLIENT}"}

    async def one_client() -> None:
        async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30) as http:
            for n in numbers:
                body = {
                    "to": f"user{n}@example.com",
                    "subject": "Hello {{ n }}",
                    "text": "Number {{ n }}",
                    "context": {"n": n},
                    "metadata": {"n": n},
                }
                response = await http.post("/v1/emails", json=body)
                assert response.status_code == 201, response.text
                ids.append(response.json()["id"])

    await asyncio.gather(*(one_client() for _ in range(CLIENTS)))
    return ids


def _metric(text: str, name: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def test_four_processes_send_each_email_exactly_once(
    database_url: str, smtp_sink: SmtpSink, tmp_path: Path
) -> None:
    env = service_env(
        database_url,
        smtp_sink.url,
        tmp_path / "home",
        api_token=CLIENT,
        admin_token=ADMIN,
        embedded_worker="1",
    )
    conn = await asyncpg.connect(database_url)
    database = await conn.fetchval("SELECT current_database()")
    try:
        with uvicorn(env, PROCESSES, tmp_path / "uvicorn.log") as (base_url, _process):
            await eventually(
                lambda: conn.fetchval("SELECT count(*) = $1 FROM mailq.workers", PROCESSES),
                timeout=60,
                message="four embedded workers registered",
            )
            ids = await _post_all(base_url)
            assert len(set(ids)) == EMAILS
            await asyncio.to_thread(smtp_sink.wait_for, EMAILS, 180)
            await eventually(
                lambda: conn.fetchval(
                    "SELECT count(*) = $1 FROM mailq.emails WHERE status = 'sent'", EMAILS
                ),
                timeout=60,
                message="every email recorded as sent",
            )
            connections = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND pid <> "
                "pg_backend_pid()",
                database,
            )
            async with httpx.AsyncClient(base_url=base_url) as http:
                scraped = (await http.get("/metrics")).text
        # Stopped (SIGTERM, graceful): nothing more can arrive; count what did.
        received = smtp_sink.count_by_message_id()
        assert len(received) == EMAILS
        assert set(received.values()) == {1}, "an email was received twice"
        recipients = sorted(r.recipients[0] for r in smtp_sink.received)
        assert recipients == sorted(f"user{n}@example.com" for n in range(EMAILS))
        assert await conn.fetchval("SELECT count(*) FROM mailq.attempts") == EMAILS
        assert await conn.fetchval("SELECT count(*) FROM mailq.worker_leases") == 0
        workers_used = await conn.fetchval("SELECT count(DISTINCT worker_id) FROM mailq.attempts")
        # Per process: HTTP pool (≤ 4) + worker pool (≤ 4) + one LISTEN connection.
        assert connections <= PROCESSES * 9
        sent_metric = _metric(scraped, 'mailq_attempts_total{kind="welcome",outcome="sent"}')
        assert sent_metric == EMAILS, "metrics summed over every process"
        print(
            f"\n{EMAILS} emails, {workers_used} workers sent them, "
            f"{connections} Postgres connections with {PROCESSES} processes"
        )
        assert re.search(r"^mailq_workers_live \d", scraped, re.MULTILINE)
    finally:
        await conn.close()
