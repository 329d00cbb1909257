"""The worker the service runs in its own process: sends what the API queued, shows in the
status endpoints and metrics, stops cleanly with the app, and comes back after a failure."""

from __future__ import annotations

import asyncio
import re
from dataclasses import replace

import asyncpg
import httpx
from asgi_lifespan import LifespanManager

from mailq.delivery.backends import sender_from_url
from mailq.delivery.sender import Sender
from mailq.service.app import create_app
from mailq.settings import Settings
from tests.service.conftest import AS_ADMIN, AS_CLIENT, email
from tests.support.smtp import SmtpSink
from tests.support.waiting import eventually

SENT = re.compile(r'^mailq_attempts_total\{kind="welcome",outcome="sent"\} (\S+)$', re.MULTILINE)


def _sent_metric(text: str) -> float:
    match = SENT.search(text)
    return float(match.group(1)) if match else 0.0


async def test_the_embedded_worker_sends_what_the_api_queued(
    settings: Settings, smtp_sink: SmtpSink, conn: asyncpg.Connection
) -> None:
    settings = replace(settings, embedded_worker=True, backend=smtp_sink.url)
    app = create_app(settings)
    async with (
        LifespanManager(app, startup_timeout=30, shutdown_timeout=60) as manager,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=manager.app), base_url="http://t"
        ) as http,
    ):
        before = _sent_metric((await http.get("/metrics")).text)
        batch = {"emails": [email(n) for n in range(20)]}
        ids = (await http.post("/v1/emails/batch", json=batch, headers=AS_CLIENT)).json()["ids"]
        await asyncio.to_thread(smtp_sink.wait_for, 20, 30)

        async def sent() -> bool:
            view = (await http.get(f"/v1/emails/{ids[0]}", headers=AS_CLIENT)).json()
            return view["state"] == "sent"

        await eventually(sent, timeout=30, message="the email shows as sent")
        view = (await http.get(f"/v1/emails/{ids[0]}", headers=AS_CLIENT)).json()
        [attempt] = view["attempts"]
        assert attempt["outcome"] == "sent" and attempt["smtp_code"] == 250
        assert (await http.get("/readyz")).json()["embedded_worker"] == "running"
        status = (
            await http.get("/email-queue/background-processor/status", headers=AS_ADMIN)
        ).json()
        assert status["running"] is True and status["workers"] == 1
        assert status["embedded_worker"]["running"] is True
        after = _sent_metric((await http.get("/metrics")).text)
        assert after - before == 20
        assert "mailq_workers_live 1.0" in (await http.get("/metrics")).text
    assert len(smtp_sink.received) == 20
    assert await conn.fetchval("SELECT count(*) FROM mailq.worker_leases") == 0, (
        "the worker removes its lease when the app stops"
    )


async def test_the_embedded_worker_comes_back_after_a_failure(
    settings: Settings, smtp_sink: SmtpSink
) -> None:
    calls = 0

    def flaky_sender(s: Settings) -> Sender:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("the first sender could not be built")
        return sender_from_url(smtp_sink.url)

    settings = replace(settings, embedded_worker=True, backend=smtp_sink.url)
    app = create_app(settings, make_sender=flaky_sender)
    async with (
        LifespanManager(app, startup_timeout=30, shutdown_timeout=60) as manager,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=manager.app), base_url="http://t"
        ) as http,
    ):
        await http.post("/v1/emails", json=email(), headers=AS_CLIENT)
        await asyncio.to_thread(smtp_sink.wait_for, 1, 30)
        assert len(smtp_sink.received) == 1
        status = (
            await http.get("/email-queue/background-processor/status", headers=AS_ADMIN)
        ).json()
        assert status["embedded_worker"]["restarts"] == 1
