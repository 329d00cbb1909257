"""Who may call what (SPEC.md): client and admin bearer tokens, rotation, 401/403, and the
tokens generated into $MAILQ_HOME/tokens when none are configured."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager

from mailq.errors import ConfigError
from mailq.service import auth
from mailq.service.api import Role
from mailq.service.app import ROUTERS, create_app
from mailq.settings import Settings
from tests.service.conftest import ADMIN, AS_ADMIN, AS_CLIENT, CLIENT, CLIENT_ROTATED, bearer
from tests.support.processes import REPO

# SPEC.md's table, written out so that a new endpoint must be placed in it on purpose.
EXPECTED: dict[tuple[str, str], Role] = {
    ("POST", "/v1/emails"): Role.CLIENT,
    ("POST", "/v1/emails/batch"): Role.CLIENT,
    ("GET", "/v1/emails/{id:id}"): Role.CLIENT,
    ("GET", "/v1/emails"): Role.CLIENT,
    ("POST", "/v1/emails/{id:id}/retry"): Role.ADMIN,
    ("POST", "/v1/emails/{id:id}/cancel"): Role.ADMIN,
    ("POST", "/v1/campaigns"): Role.CLIENT,
    ("POST", "/v1/campaigns/{id:id}/recipients"): Role.CLIENT,
    ("GET", "/v1/campaigns/{id:id}"): Role.CLIENT,
    ("POST", "/v1/campaigns/{id:id}/pause"): Role.ADMIN,
    ("POST", "/v1/campaigns/{id:id}/resume"): Role.ADMIN,
    ("POST", "/v1/campaigns/{id:id}/cancel"): Role.ADMIN,
    ("GET", "/v1/suppressions"): Role.ADMIN,
    ("POST", "/v1/suppressions"): Role.ADMIN,
    ("DELETE", "/v1/suppressions"): Role.ADMIN,
    ("GET", "/v1/suppressions/{address}"): Role.ADMIN,
    ("POST", "/v1/suppressions/{address}"): Role.ADMIN,
    ("DELETE", "/v1/suppressions/{address}"): Role.ADMIN,
    ("POST", "/v1/kinds/{kind}/pause"): Role.ADMIN,
    ("POST", "/v1/kinds/{kind}/resume"): Role.ADMIN,
    ("GET", "/v1/unsubscribe/{token}"): Role.PUBLIC,
    ("POST", "/v1/unsubscribe/{token}"): Role.PUBLIC,
    ("GET", "/v1/events"): Role.ADMIN,
    # Verified by each provider's own scheme (401 when that fails), no bearer token.
    ("POST", "/v1/webhooks/ses"): Role.PUBLIC,
    ("POST", "/v1/webhooks/postmark"): Role.PUBLIC,
    ("POST", "/v1/webhooks/mailgun"): Role.PUBLIC,
    ("POST", "/v1/webhooks/sendgrid"): Role.PUBLIC,
    ("POST", "/v1/webhooks/resend"): Role.PUBLIC,
    ("GET", "/v1/stats"): Role.ADMIN,
    ("GET", "/v1/workers"): Role.ADMIN,
    ("GET", "/email-queue/stats"): Role.CLIENT,
    ("GET", "/email-queue/background-processor/status"): Role.ADMIN,
    ("GET", "/healthz"): Role.PUBLIC,
    ("GET", "/readyz"): Role.PUBLIC,
    ("GET", "/metrics"): Role.PUBLIC,
    ("GET", "/openapi.json"): Role.PUBLIC,
}
OPERATIONS = [op for router in ROUTERS for op in router.operations]


def test_every_endpoint_is_in_the_table() -> None:
    declared = {(op.method, op.path): op.role for op in OPERATIONS}
    assert declared == EXPECTED


def _path(template: str) -> str:
    return (
        template.replace("{id:id}", "1")
        .replace("{address}", "someone@example.com")
        .replace("{kind}", "welcome")
        .replace("{token}", "not-a-token")
    )


@pytest.mark.parametrize(("method", "template"), sorted(EXPECTED))
async def test_the_auth_table(client: httpx.AsyncClient, method: str, template: str) -> None:
    role = EXPECTED[(method, template)]
    path = _path(template)

    async def status(headers: dict[str, str]) -> int:
        response = await client.request(method, path, headers=headers)
        if response.status_code in (401, 403):
            assert "error" in response.json()
        return response.status_code

    anonymous = await status({})
    wrong = await status(bearer("not-a-token"))
    as_client = await status(AS_CLIENT)
    as_admin = await status(AS_ADMIN)
    if role is Role.PUBLIC:
        assert {anonymous, wrong, as_client, as_admin}.isdisjoint({401, 403})
    elif role is Role.CLIENT:
        assert (anonymous, wrong) == (401, 401)
        assert as_client not in (401, 403)
        assert as_admin not in (401, 403)
    else:
        assert (anonymous, wrong) == (401, 401)
        assert as_client == 403
        assert as_admin not in (401, 403)


async def test_a_401_asks_for_a_bearer_token(client: httpx.AsyncClient) -> None:
    for header in ("", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", f"Token {CLIENT}", "x" * 600):
        response = await client.get("/v1/emails/1", headers={"Authorization": header})
        assert response.status_code == 401, header
        assert response.headers["www-authenticate"].startswith("Bearer")


async def test_rotated_tokens_all_work_and_the_scheme_is_case_insensitive(
    client: httpx.AsyncClient,
) -> None:
    for header in (f"Bearer {CLIENT}", f"bearer {CLIENT_ROTATED}", f"BEARER {ADMIN}"):
        response = await client.get("/email-queue/stats", headers={"Authorization": header})
        assert response.status_code == 200, header


async def test_tokens_never_appear_in_bodies_or_logs(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    almost = ADMIN[:-1] + "X"
    bodies = [
        (await client.get("/v1/stats", headers=bearer(almost))).text,
        (await client.get("/v1/stats", headers=AS_CLIENT)).text,
        (await client.post("/v1/emails", content=b"{", headers=AS_CLIENT)).text,
    ]
    for secret in (ADMIN, CLIENT, almost):
        assert all(secret not in body for body in bodies)
        assert secret not in caplog.text


# -- generated tokens ----------------------------------------------------------------------


async def test_tokens_are_generated_once_into_mailq_home(settings: Settings) -> None:
    unset = replace(settings, api_tokens=(), admin_tokens=())
    path = auth.token_file(unset.home)
    assert not path.exists()
    app = create_app(unset)
    async with LifespanManager(app) as manager:
        assert path.exists()
        assert path.stat().st_mode & 0o777 == 0o600
        stored = auth.read_or_create_token_file(unset.home)
        client_token = stored[auth.CLIENT_VARIABLE][0]
        admin_token = stored[auth.ADMIN_VARIABLE][0]
        assert client_token.startswith("mqc_") and admin_token.startswith("mqa_")
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            ok = await http.get("/v1/stats", headers=bearer(admin_token))
            assert ok.status_code == 200
            forbidden = await http.get("/v1/stats", headers=bearer(client_token))
            assert forbidden.status_code == 403
    first = path.read_text()
    async with LifespanManager(create_app(unset)):
        pass
    assert path.read_text() == first, "a second start must reuse the tokens"


def test_a_configured_kind_is_kept_and_the_other_comes_from_the_file(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, api_tokens=("mine",))
    tokens = auth.load_tokens(settings)
    mine = tokens.identify("mine")
    assert mine is not None and mine.role is Role.CLIENT
    stored = auth.read_or_create_token_file(tmp_path)
    principal = tokens.identify(stored[auth.ADMIN_VARIABLE][0])
    assert principal is not None and principal.role is Role.ADMIN
    assert tokens.identify(stored[auth.CLIENT_VARIABLE][0]) is None


def test_losing_the_creation_race_reads_the_winners_tokens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_link = os.link
    winner = (
        "MAILQ_API_TOKEN=winner-client\nMAILQ_ADMIN_TOKEN=winner-admin\n"
        "MAILQ_VIEWER_TOKEN=winner-viewer\n"
    )

    def link_after_another_process(source: str, target: str) -> None:
        Path(target).write_text(winner)  # another process got there first
        real_link(source, target)

    monkeypatch.setattr(os, "link", link_after_another_process)
    stored = auth.read_or_create_token_file(tmp_path)
    assert stored == {
        auth.CLIENT_VARIABLE: ("winner-client",),
        auth.ADMIN_VARIABLE: ("winner-admin",),
        auth.VIEWER_VARIABLE: ("winner-viewer",),
    }
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tokens"], "temporary file left"


def test_processes_starting_together_share_one_set_of_tokens(tmp_path: Path) -> None:
    script = (
        "import sys; from pathlib import Path; from mailq.service.auth import "
        "read_or_create_token_file as r; print(sorted(r(Path(sys.argv[1])).items()))"
    )
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(tmp_path)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    outputs = {p.communicate(timeout=60)[0] for p in processes}
    assert all(p.returncode == 0 for p in processes)
    assert len(outputs) == 1


def test_a_bad_token_file_is_a_clear_error_that_does_not_echo_it(tmp_path: Path) -> None:
    path = auth.token_file(tmp_path)
    path.write_text("MAILQ_API_TOKEN secret-value-here\n")
    with pytest.raises(ConfigError) as error:
        auth.read_or_create_token_file(tmp_path)
    assert "secret-value-here" not in str(error.value)
    assert re.search(r"tokens: unexpected line", str(error.value))


def test_a_token_cannot_be_both_client_and_admin() -> None:
    with pytest.raises(ConfigError):
        auth.Tokens.of(("same",), ("same",))
