"""Building a message: staging redirect, unsubscribe headers, rendering failures, DKIM."""

from __future__ import annotations

import email
import json
import subprocess
from datetime import UTC, datetime
from email import policy
from pathlib import Path
from typing import Any

import dkim
import pytest

from mailq import Email, PermanentFailure
from mailq.compose.dkim import DkimKey, DkimSigner
from mailq.compose.message import OutgoingMessage, build_message
from mailq.compose.unsubscribe import UnsubscribeLinks
from mailq.models import ClaimedEmail
from mailq.validation import to_row

LINKS = UnsubscribeLinks(b"s" * 32, "https://mail.example.com")


def claimed(**fields: Any) -> ClaimedEmail:
    base: dict[str, Any] = {
        "to": "ann@example.com",
        "subject": "Hi {{ name }}",
        "text": "Hello {{ name }}. Leave: {{ unsubscribe_url }}",
        "context": {"name": "Ann"},
    }
    base.update(fields)
    row = to_row(Email(**base), default_from="news@example.com")
    return ClaimedEmail(
        1, row.kind, row.priority, 1, 3, row.to_address, row.message_id,
        json.loads(row.content), datetime.now(UTC),
    )  # fmt: skip


def parsed(message: OutgoingMessage) -> Any:
    return email.message_from_bytes(message.data, policy=policy.default)


def test_staging_redirect_delivers_to_one_address_and_keeps_the_original() -> None:
    message = build_message(
        claimed(cc=["c@example.com"], bcc=["b@example.com"]), "staging@example.com"
    )
    assert message.to == "staging@example.com" and message.other_recipients == ()
    headers = parsed(message)
    assert headers["To"] == "staging@example.com" and headers["Cc"] is None
    assert headers["X-Mailq-Original-To"] == "ann@example.com, c@example.com, b@example.com"
    assert b"b@example.com" not in message.data.split(b"X-Mailq-Original-To")[0]


def test_campaign_messages_carry_one_click_unsubscribe() -> None:
    message = build_message(claimed(kind="search_engine"), unsubscribe=LINKS, list_unsubscribe=True)
    headers = parsed(message)
    assert "https://mail.example.com/v1/unsubscribe/" in headers["List-Unsubscribe"]
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    body = headers.get_body(("plain",)).get_content()
    assert "Leave: https://mail.example.com/v1/unsubscribe/" in body
    transactional = parsed(build_message(claimed(), unsubscribe=LINKS, list_unsubscribe=False))
    assert transactional["List-Unsubscribe"] is None


def test_an_html_email_always_has_a_text_alternative() -> None:
    message = parsed(build_message(claimed(text=None, html="<p>Hi <b>{{ name }}</b></p>")))
    assert message.get_body(("plain",)).get_content().strip() == "Hi Ann"
    assert "<b>Ann</b>" in message.get_body(("html",)).get_content()


def test_html_is_autoescaped() -> None:
    message = claimed(text=None, html="<p>{{ name }}</p>", context={"name": "<script>x</script>"})
    html = parsed(build_message(message)).get_body(("html",)).get_content()
    assert "&lt;script&gt;" in html


def test_rendering_failures_fail_permanently_and_build_nothing() -> None:
    broken = claimed()
    content = dict(broken.content)
    content["context"] = {}
    with pytest.raises(PermanentFailure, match="template rendering failed"):
        build_message(ClaimedEmail(**{**_fields(broken), "content": content}))
    content = dict(broken.content)
    content["context"] = {"name": "x\r\nBcc: eve@example.com"}
    with pytest.raises(PermanentFailure, match="subject"):
        build_message(ClaimedEmail(**{**_fields(broken), "content": content}))


def _fields(message: ClaimedEmail) -> dict[str, Any]:
    return {name: getattr(message, name) for name in ClaimedEmail.__dataclass_fields__}


@pytest.fixture(scope="module")
def rsa_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, bytes]:
    folder = tmp_path_factory.mktemp("dkim")
    private, public = folder / "key.pem", folder / "pub.pem"
    subprocess.run(["openssl", "genrsa", "-out", private, "2048"], check=True, capture_output=True)
    subprocess.run(
        ["openssl", "rsa", "-in", private, "-pubout", "-out", public],
        check=True,
        capture_output=True,
    )
    return Path(private).read_bytes(), Path(public).read_bytes()


def test_dkim_signs_the_unsubscribe_headers_and_verifies(rsa_key: tuple[bytes, bytes]) -> None:
    private, public = rsa_key
    signer = DkimSigner(DkimKey("example.com", "mail", private))
    message = build_message(claimed(kind="search_engine"), unsubscribe=LINKS, list_unsubscribe=True)
    signed = signer.sign(message)
    assert signed.data.startswith(b"DKIM-Signature:")
    signature = parsed(signed)["DKIM-Signature"]
    assert "list-unsubscribe-post" in signature.lower().replace(" ", "")
    key_b64 = b"".join(line for line in public.splitlines() if b"-----" not in line)

    def dns(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"mail._domainkey.example.com."
        return b"v=DKIM1; k=rsa; p=" + key_b64

    assert dkim.verify(signed.data, dnsfunc=dns)
    tampered = signed.data.replace(b"Hi Ann", b"Hi Bob")
    assert not dkim.verify(tampered, dnsfunc=dns)


class _CountingLinks(UnsubscribeLinks):
    calls: int = 0

    def url(self, address: str) -> str:
        type(self).calls += 1
        return super().url(address)


def test_the_unsubscribe_url_is_signed_only_when_a_template_reads_it() -> None:
    links = _CountingLinks(b"s" * 32, "https://mail.example.com")
    plain = build_message(claimed(text="Hello {{ name }}"), unsubscribe=links)
    assert _CountingLinks.calls == 0
    assert "Hello Ann" in parsed(plain).get_body(("plain",)).get_content()
    html = claimed(text=None, html="<p>Bye: <a href='{{ unsubscribe_url }}'>x</a></p>")
    body = parsed(build_message(html, unsubscribe=links)).get_body(("html",)).get_content()
    assert _CountingLinks.calls == 1
    assert "https://mail.example.com/v1/unsubscribe/" in body
    # A context that sets the variable itself keeps its own value.
    own = claimed(context={"name": "Ann", "unsubscribe_url": "https://own.example/u"})
    message = build_message(own, unsubscribe=links)
    assert "Leave: https://own.example/u" in parsed(message).as_string()
    assert _CountingLinks.calls == 1
