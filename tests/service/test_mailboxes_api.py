"""Mailboxes over HTTP: display names accepted in every address field (a defect of the issue:
each was a 422), `to` and `to_address` reported apart, MAILQ_FROM and a kind's `from` applied
as by the Python API, inline images and content types with parameters, and a bad MAILQ_FROM
that stops the service at start instead of blaming every client."""

from __future__ import annotations

import base64
import dataclasses
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from asgi_lifespan import LifespanManager

from mailq.config import Config, load_config
from mailq.service.app import create_app
from mailq.settings import Settings
from mailq.validation import unknown_kind_message
from tests.service.conftest import AS_CLIENT, email

REPO = Path(__file__).resolve().parents[2]
MAILQ_FROM = "Acme <hello@acme.example.com>"


@pytest.fixture
def config(tmp_path: Path) -> Config:
    path = tmp_path / "mailq.toml"
    path.write_text('[kinds.invoice]\npriority = 1\nfrom = "Acme Billing <billing@acme.test>"\n')
    return load_config(path)


@pytest.fixture
async def http(settings: Settings, config: Config) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(dataclasses.replace(settings, from_address=MAILQ_FROM), config=config)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            yield client


async def test_every_address_field_takes_a_display_name(
    http: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    body = email(
        to="Ann Lee <ann@example.test>",
        cc=['"Doe, Jane" <jane@example.com>'],
        bcc=["Jörg Müller <joerg@example.com>"],
        reply_to=["Support <help@acme.example.com>"],
        **{"from": "Acme News <news@acme.example.com>"},
    )
    created = await http.post("/v1/emails", json=body, headers=AS_CLIENT)
    assert created.status_code == 201, created.text
    view = (await http.get(f"/v1/emails/{created.json()['id']}", headers=AS_CLIENT)).json()
    assert (view["to"], view["to_address"]) == ("Ann Lee <ann@example.test>", "ann@example.test")
    assert view["from"] == "Acme News <news@acme.example.com>"
    assert view["cc"] == ['"Doe, Jane" <jane@example.com>']
    assert view["bcc"] == ["Jörg Müller <joerg@example.com>"]
    assert view["reply_to"] == ["Support <help@acme.example.com>"]
    assert view["message_id"].endswith("@acme.example.com>")
    row = await conn.fetchrow("SELECT to_address, to_name FROM mailq.emails")
    assert tuple(row) == ("ann@example.test", "Ann Lee")


async def test_mailq_from_and_a_kinds_from_are_applied(http: httpx.AsyncClient) -> None:
    plain = await http.post("/v1/emails", json=email(), headers=AS_CLIENT)
    invoice = await http.post("/v1/emails", json=email(kind="invoice"), headers=AS_CLIENT)
    views = [
        (await http.get(f"/v1/emails/{r.json()['id']}", headers=AS_CLIENT)).json()
        for r in (plain, invoice)
    ]
    assert [v["from"] for v in views] == [MAILQ_FROM, "Acme Billing <billing@acme.test>"]
    assert views[0]["to"] == views[0]["to_address"] == "user0@example.com"


async def test_an_undeclared_kind_gets_the_message_of_every_entry_point(
    http: httpx.AsyncClient, config: Config
) -> None:
    refused = await http.post("/v1/emails", json=email(kind="newsletter"), headers=AS_CLIENT)
    assert refused.status_code == 422
    assert refused.json()["error"] == unknown_kind_message("newsletter", config.kinds)


@pytest.mark.parametrize(
    ("address", "fragment"),
    [
        ("Doe, Jane <jane@example.com>", "double quotes"),
        ("x@example.invalid", "special-use"),
        ("Ann <ann@example.com", "closing '>'"),
    ],
)
async def test_a_bad_mailbox_is_422_naming_the_field(
    http: httpx.AsyncClient, address: str, fragment: str
) -> None:
    refused = await http.post("/v1/emails", json=email(to=address), headers=AS_CLIENT)
    assert refused.status_code == 422
    error = refused.json()["error"]
    assert error.startswith("to: ") and fragment in error, error


async def test_inline_images_and_content_type_parameters_are_accepted(
    http: httpx.AsyncClient,
) -> None:
    png = base64.b64encode(b"\x89PNG\r\n\x1a\n").decode()
    body = email(
        html='<p>Hi <img src="cid:logo@acme"></p>',
        attachments=[
            {"filename": "logo.png", "content_type": "image/png", "content_base64": png,
             "content_id": "logo@acme"},
            {"filename": "a.csv", "content_type": "text/csv; charset=iso-8859-1",
             "content_base64": base64.b64encode("caf\xe9".encode("latin-1")).decode()},
        ],
    )  # fmt: skip
    created = await http.post("/v1/emails", json=body, headers=AS_CLIENT)
    assert created.status_code == 201, created.text
    view = (await http.get(f"/v1/emails/{created.json()['id']}", headers=AS_CLIENT)).json()
    assert view["attachments"] == [
        {"filename": "logo.png", "content_type": "image/png", "content_id": "logo@acme"},
        {"filename": "a.csv", "content_type": "text/csv; charset=iso-8859-1"},
    ]
    unknown = {"filename": "a", "content_type": "text/plain", "content_base64": "", "inline": 1}
    refused = await http.post("/v1/emails", json=email(attachments=[unknown]), headers=AS_CLIENT)
    assert refused.status_code == 422
    assert refused.json()["error"] == "attachments[0].inline: unknown field"


def test_a_bad_mailq_from_stops_the_service_at_start_in_one_line(tmp_path: Path) -> None:
    """A defect of the issue: the service started, then answered every POST with a 422 that
    blamed the client."""
    env = {
        **os.environ,
        "MAILQ_FROM": "Acme, Inc. <hello@acme.example.com>",
        "MAILQ_HOME": str(tmp_path),
    }
    started = subprocess.run(
        [sys.executable, "-m", "uvicorn", "mailq.service.app:app", "--port", "1"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert started.returncode == 3  # uvicorn's "failed to start": its supervisor stops too
    # uvicorn's own start-up lines aside, mailq says what is wrong in one line.
    lines = [line for line in started.stderr.splitlines() if "MAILQ_FROM" in line]
    assert [line.removeprefix("ERROR:    ").removeprefix("mailq: ") for line in lines] == [
        "MAILQ_FROM: 'Acme, Inc. <hello@acme.example.com>' is not a valid mailbox (a "
        "display name with ',' must be in double quotes, like \"Doe, Jane\" <jane@example.com>)"
    ], started.stderr
