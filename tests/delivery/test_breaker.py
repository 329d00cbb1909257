"""The breaker of an ESP backend, probed the way the claimer probes it while it is open
(`probe_if_due`), against a local server answering as Postmark does: it stays open through a
401, a 403, a 404, a redirect, a 5xx and a probe left unanswered, and closes on the first 2xx."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable

import asyncpg
from starlette.responses import Response

from mailq.delivery.backends import sender_from_url
from mailq.delivery.breaker import Breaker
from tests.delivery.esp.fake import Seen, reply, running
from tests.delivery.esp.messages import endpoint
from tests.support.waiting import eventually


async def test_an_esp_breaker_closes_only_on_a_2xx_probe(conn: asyncpg.Connection) -> None:
    never = asyncio.Event()

    async def unanswered(seen: Seen) -> Response:
        await never.wait()
        return Response(b"", status_code=200)

    async with running(reply(200, {"ID": 1, "Name": "Production"})) as provider:
        provider.answer(
            reply(401, {"ErrorCode": 10, "Message": "Bad or missing Server API token."}),
            reply(403, {"ErrorCode": 10, "Message": "Forbidden"}),
            reply(404, {"ErrorCode": 0, "Message": "Not found"}),
            reply(302, headers={"Location": "https://example.com/maintenance"}),
            reply(500, {"ErrorCode": 100, "Message": "Maintenance"}),
            reply(503, b"Service Unavailable"),
            unanswered,
        )
        sender = sender_from_url(f"postmark://tok@?endpoint={endpoint(provider.url)}")
        # Probes 1 ms apart (the claimer asks when its wait is over).
        breaker = Breaker(sender, uuid.uuid4(), probe_timeout_s=0.5, base_s=0.001, factor=1.0)

        def probed(count: int) -> Callable[[], Awaitable[bool]]:
            async def done() -> bool:
                closed = await breaker.probe_if_due(conn)
                assert breaker.open != closed
                if count < 8:  # the 7 answers that leave the backend down
                    assert not closed
                return len(provider.seen) == count and (count < 8 or closed)

            return done

        try:
            await breaker.trip(conn, "postmark: HTTP 401")
            for count in range(1, 9):
                await eventually(probed(count), timeout=10, message=f"probe {count}")
        finally:
            never.set()
            await sender.close()
    assert not breaker.open
    assert [(s.method, s.path) for s in provider.seen] == [("GET", "/server")] * 8
    row = await conn.fetchrow(
        "SELECT state, probes, last_error FROM mailq.backend_breakers WHERE backend = $1",
        breaker.backend,
    )
    assert (row["state"], row["probes"]) == ("closed", 7)
