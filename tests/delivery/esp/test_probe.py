"""The probe the circuit breaker sends an ESP backend while it is open (mailq.delivery.breaker):
only a 2xx, or the provider's documented answer of an authenticated key, counts as the backend
being back; a 401/403/404/redirect/429/5xx or no answer in time keeps the breaker open.

The probe requests are each provider's read-only lookup, answered by a local server:
- Postmark "Get the server": https://postmarkapp.com/developer/api/server-api
- Mailgun "Get a domain": https://documentation.mailgun.com/docs/mailgun/api-reference/openapi-final/tag/Domains/
- Resend "List domains" (a sending-only key: 401 `restricted_api_key`):
  https://resend.com/docs/api-reference/domains/list-domains, https://resend.com/docs/api-reference/errors
- SendGrid "Retrieve a list of scopes": https://www.twilio.com/docs/sendgrid/api-reference/api-key-permissions/retrieve-a-list-of-scopes-granted-to-an-api-key
- SES v2 GetAccount (`SendingEnabled`): https://docs.aws.amazon.com/ses/latest/APIReference-V2/API_GetAccount.html
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from starlette.responses import Response

from mailq.delivery.backends import sender_from_url
from mailq.errors import BackendUnavailable, SendFailure
from tests.delivery.esp.fake import Seen, reply, running
from tests.delivery.esp.messages import endpoint
from tests.delivery.esp.test_ses import aws_env

# scheme: (backend URL before ?endpoint=, the probe's path, what a usable key is answered)
PROVIDERS: dict[str, tuple[str, str, Any]] = {
    "postmark": ("postmark://tok@", "/server", {"ID": 1, "Name": "Production"}),
    "mailgun": ("mailgun://key@mg.example.com", "/v3/domains/mg.example.com", {"domain": {}}),
    "resend": ("resend://re_key@", "/domains", {"data": []}),
    "sendgrid": ("sendgrid://SG.key@", "/v3/scopes", {"scopes": ["mail.send"]}),
    "ses": ("ses://eu-west-1", "/v2/email/account", {"SendingEnabled": True}),
}

# Answers that leave the backend down, whatever the provider.
DOWN = {
    "401": reply(401, {"message": "Unauthorized"}),
    "403": reply(403, {"message": "Forbidden"}),
    "404": reply(404, {"message": "Domain not found"}),
    "302": reply(302, headers={"Location": "https://example.com/login"}),
    "429": reply(429, {"message": "Too many requests"}, {"Retry-After": "1"}),
    "500": reply(500, {"message": "Internal error"}),
    "503": reply(503, b"Service Unavailable"),
}


async def probes(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    scheme: str,
    *answers: Callable[[Seen], Response | Awaitable[Response]],
    reply_timeout_s: float = 10.0,
    release: asyncio.Event | None = None,
) -> tuple[list[Exception | None], list[Seen]]:
    """Probe the backend `scheme` once per answer of a server giving `answers` in order:
    each probe's error (None: the backend is back) and what the server saw. `release` is set
    once the probes are over (an answer held until then lets the server stop)."""
    aws_env(monkeypatch, tmp_path, "AKIDEXAMPLE", "secret")
    url, _, _ = PROVIDERS[scheme]
    errors: list[Exception | None] = []
    async with running(reply(500)) as provider:
        provider.answer(*answers)
        sender: Any = sender_from_url(
            f"{url}?endpoint={endpoint(provider.url)}", reply_timeout_s=reply_timeout_s
        )
        try:
            for _ in answers:
                try:
                    await sender.probe()
                    errors.append(None)
                except Exception as exc:
                    errors.append(exc)
        finally:
            if release is not None:
                release.set()
            await sender.close()
    return errors, provider.seen


@pytest.mark.parametrize("scheme", list(PROVIDERS))
async def test_only_a_2xx_brings_the_backend_back(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, scheme: str
) -> None:
    _, path, usable = PROVIDERS[scheme]
    errors, seen = await probes(
        monkeypatch, tmp_path, scheme, *DOWN.values(), reply(204), reply(200, usable)
    )
    for status, error in zip(DOWN, errors, strict=False):
        assert isinstance(error, BackendUnavailable), (scheme, status)
        assert f"HTTP {status}" in str(error)
    assert errors[len(DOWN) :] == [None, None]
    assert {(s.method, s.path) for s in seen} == {("GET", path)}
    assert all(
        any(h in s.headers for h in ("authorization", "x-postmark-server-token")) for s in seen
    )


async def test_no_answer_in_time_keeps_the_backend_down(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    never = asyncio.Event()

    async def hanging(seen: Seen) -> Response:
        await never.wait()
        return Response(b"", status_code=200)

    (error,), seen = await probes(
        monkeypatch, tmp_path, "postmark", hanging, reply_timeout_s=0.3, release=never
    )
    assert isinstance(error, SendFailure) and "no complete answer" in str(error)
    assert len(seen) == 1


@pytest.mark.parametrize(
    ("scheme", "answer", "back"),
    [
        # A sending-only Resend key cannot list domains; the 401 names it: the key is taken.
        (
            "resend",
            reply(401, {"name": "restricted_api_key", "message": "only send", "statusCode": 401}),
            True,
        ),
        ("resend", reply(401, {"name": "invalid_api_key", "message": "API key is invalid"}), False),
        # A SendGrid key that may read its scopes but not send is refused every send.
        ("sendgrid", reply(200, {"scopes": ["user.profile.read"]}), False),
        # SES answers GetAccount while the account's sending is paused.
        ("ses", reply(200, {"SendingEnabled": False, "EnforcementStatus": "HEALTHY"}), False),
    ],
    ids=["resend-restricted-key", "resend-invalid-key", "sendgrid-no-mail-send", "ses-paused"],
)
async def test_the_providers_documented_answers(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, scheme: str, answer: Any, back: bool
) -> None:
    (error,), _ = await probes(monkeypatch, tmp_path, scheme, answer)
    assert (error is None) is back, error
    if not back:
        assert isinstance(error, BackendUnavailable)
