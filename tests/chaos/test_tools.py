"""The chaos tools themselves: the relay's failure modes, the fault proxy's, and the private
PostgreSQL cluster's stop, start and restart."""

from __future__ import annotations

import asyncio
from email.message import EmailMessage

import aiosmtplib
import asyncpg
import pytest

from tests.support.fault_proxy import FaultProxy, postgres_upstream, through
from tests.support.private_postgres import private_postgres
from tests.support.relay import RecordingRelay, RelayMode

pytestmark = pytest.mark.chaos


async def send(port: int, n: int, timeout: float = 2.0) -> None:
    message = EmailMessage()
    message["From"] = "from@example.com"
    message["To"] = "to@example.com"
    message["Subject"] = "chaos"
    message["Message-ID"] = f"<{n}@chaos.test>"
    message.set_content("one\n.two, dot-stuffed\n")
    await aiosmtplib.send(message, hostname="127.0.0.1", port=port, timeout=timeout)


async def test_the_relay_records_each_delivery_and_fails_in_each_mode() -> None:
    with RecordingRelay() as relay:
        await send(relay.port, 1)
        relay.set_mode(RelayMode.REFUSE)
        with pytest.raises(aiosmtplib.SMTPConnectError, match="111"):
            await send(relay.port, 2)
        relay.set_mode(RelayMode.GREET_421)
        with pytest.raises(aiosmtplib.SMTPConnectResponseError) as greeting:
            await send(relay.port, 3)
        assert greeting.value.code == 421
        relay.set_mode(RelayMode.HANG)
        with pytest.raises(aiosmtplib.SMTPConnectTimeoutError):
            await send(relay.port, 4, timeout=0.5)
        relay.set_mode(RelayMode.ACCEPT)
        await send(relay.port, 5)
        await send(relay.port, 5)
        assert relay.counts() == {"<1@chaos.test>": 1, "<5@chaos.test>": 2}
        assert relay.connections(RelayMode.GREET_421) == 1
        assert relay.connections(RelayMode.HANG) == 1
        (first, *_) = relay.deliveries
        assert first.recipients == ("to@example.com",)
        assert first.data_began <= first.accepted_at


async def test_the_proxy_passes_stalls_cuts_and_refuses(database_url: str) -> None:
    with FaultProxy(*postgres_upstream(database_url)) as proxy:
        url = through(database_url, proxy)
        conn = await asyncpg.connect(url)
        assert await conn.fetchval("SELECT 1") == 1
        proxy.stall()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(conn.fetchval("SELECT 2"), 1.0)
        with pytest.raises(TimeoutError):
            await asyncpg.connect(url, timeout=1.0)
        assert proxy.cut() >= 1
        assert conn.is_closed() or not await _usable(conn)
        proxy.refuse()
        with pytest.raises(ConnectionRefusedError):
            await asyncpg.connect(url, timeout=1.0)
        proxy.pass_through()
        again = await asyncpg.connect(url)
        assert await again.fetchval("SELECT 3") == 3
        await again.close()


async def _usable(conn: asyncpg.Connection) -> bool:
    try:
        await asyncio.wait_for(conn.fetchval("SELECT 1"), 2.0)
    except (OSError, asyncpg.InterfaceError, asyncpg.PostgresError, TimeoutError):
        return False
    return True


def test_the_private_cluster_stops_starts_restarts_and_is_removed() -> None:
    with private_postgres() as cluster:
        folder = cluster.folder
        assert cluster.port != 5432
        assert (folder / "data" / "PG_VERSION").exists()
        assert cluster.accepts()
        cluster.restart("immediate")
        assert cluster.accepts()
        cluster.stop("immediate")
        assert not cluster.running
        assert not cluster.accepts()
        cluster.start()
        assert cluster.accepts()
    assert not folder.exists()
