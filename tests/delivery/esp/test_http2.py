"""The ESP client speaks HTTP/2 where the server offers it (TLS with ALPN `h2`), and keeps
one connection for many requests: a minimal HTTP/2 server (the `h2` library httpx uses)
on loopback with a certificate made for the test."""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import h2.config
import h2.connection
import h2.events
import pytest

from mailq.delivery.backends import sender_from_url
from mailq.delivery.esp.resend import ResendSender
from tests.delivery.esp.messages import message


class H2Server:
    """Answers every request 200 `{"id": "h2-N"}` and counts connections and streams."""

    def __init__(self) -> None:
        self.connections = 0
        self.paths: list[str] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        conn.initiate_connection()
        writer.write(conn.data_to_send())
        headers: dict[int, dict[str, str]] = {}
        try:
            while data := await reader.read(65536):
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.RequestReceived):
                        headers[event.stream_id] = {
                            k.decode() if isinstance(k, bytes) else k: v.decode()
                            if isinstance(v, bytes)
                            else v
                            for k, v in event.headers
                        }
                    elif isinstance(event, h2.events.DataReceived):
                        conn.acknowledge_received_data(
                            event.flow_controlled_length, event.stream_id
                        )
                    elif isinstance(event, h2.events.StreamEnded):
                        self.paths.append(headers[event.stream_id][":path"])
                        body = json.dumps({"id": f"h2-{len(self.paths)}"}).encode()
                        conn.send_headers(
                            event.stream_id,
                            [
                                (":status", "200"),
                                ("content-type", "application/json"),
                                ("content-length", str(len(body))),
                            ],
                        )
                        conn.send_data(event.stream_id, body, end_stream=True)
                writer.write(conn.data_to_send())
                await writer.drain()
        finally:
            writer.close()


@pytest.fixture
async def h2_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[str, H2Server]]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    # The client trusts the test's certificate the usual way (httpx reads SSL_CERT_FILE).
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    context.set_alpn_protocols(["h2"])
    server_state = H2Server()
    server = await asyncio.start_server(server_state.handle, "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"https://localhost:{port}", server_state
    finally:
        server.close()


async def test_requests_go_over_one_http2_connection(h2_url: tuple[str, H2Server]) -> None:
    url, server = h2_url
    sender = sender_from_url(f"resend://re_key@?endpoint={quote(url, safe='')}")
    assert isinstance(sender, ResendSender)
    try:
        receipts = await asyncio.gather(*(sender.send(message(n)) for n in range(1, 6)))
        await sender.send(message(6))
    finally:
        await sender.close()
    assert sorted(r.provider_message_id or "" for r in receipts) == [f"h2-{n}" for n in range(1, 6)]
    assert server.paths == ["/emails"] * 6
    assert server.connections == 1, "HTTP/2 multiplexes the requests on one kept-alive connection"
