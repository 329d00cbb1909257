"""What the ESP backends share: URLs and extras, rate-limit headers, the parts of a message."""

from __future__ import annotations

import email
import sys
from datetime import UTC, datetime, timedelta
from email import policy
from email.utils import format_datetime

import pytest

from mailq.delivery.backends import sender_from_url
from mailq.delivery.esp.outcomes import Verdict, retry_after_s, verdict_for
from mailq.errors import BackendError
from tests.delivery.esp.messages import PNG, full

NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "120"}, 120.0),
        (
            {
                "retry-after": format_datetime(
                    datetime.fromtimestamp(NOW, UTC) + timedelta(seconds=90), usegmt=True
                )
            },
            90.0,
        ),
        ({"ratelimit-reset": "3", "ratelimit-remaining": "0"}, 3.0),
        ({"ratelimit": "limit=10, remaining=0, reset=5"}, 5.0),
        ({"ratelimit": '"default";r=0;t=7'}, 7.0),
        ({"x-ratelimit-reset": str(int(NOW) + 40)}, 40.0),
        ({"x-ratelimit-reset": str(int(NOW * 1000) + 2500)}, 2.5),
        ({"retry-after": "-5"}, 0.0),
        ({"retry-after": "soon"}, None),
        ({}, None),
    ],
)
def test_the_wait_a_provider_asks_for(headers: dict[str, str], expected: float | None) -> None:
    assert retry_after_s(headers, now=NOW) == expected


def test_the_status_decides_before_the_table() -> None:
    assert verdict_for(401, None) is Verdict.BACKEND
    assert verdict_for(403, None) is Verdict.BACKEND
    assert verdict_for(429, None) is Verdict.TRANSIENT
    assert verdict_for(502, None) is Verdict.TRANSIENT
    assert verdict_for(418, None) is Verdict.PERMANENT  # undocumented 4xx: the email's


async def test_every_scheme_is_wired() -> None:
    urls = {
        "ses://eu-west-1": "https://email.eu-west-1.amazonaws.com",
        "postmark://tok@": "https://api.postmarkapp.com",
        "mailgun://key@mg.example.com": "https://api.mailgun.net",
        "resend://re_key@": "https://api.resend.com",
        "sendgrid://SG.key@": "https://api.sendgrid.com",
    }
    for url, base in urls.items():
        sender = sender_from_url(url)
        assert getattr(sender, "base_url", None) == base, url
        assert getattr(sender, "http2", None) is True
        await sender.close()


def test_malformed_urls() -> None:
    with pytest.raises(BackendError, match="server token goes before the '@'"):
        sender_from_url("postmark://")
    with pytest.raises(BackendError, match="name the sending domain"):
        sender_from_url("mailgun://key@")
    with pytest.raises(BackendError, match="region= is us or eu"):
        sender_from_url("mailgun://key@mg.example.com?region=ap")


def test_unknown_schemes_do_not_echo_the_url() -> None:
    with pytest.raises(BackendError) as caught:
        sender_from_url("sendgird://SG.secret@")
    assert "SG.secret" not in str(caught.value) and "sendgrid://" in str(caught.value)


@pytest.mark.parametrize(
    ("url", "module", "extra"),
    [
        ("ses://us-east-1", "botocore", "ses"),
        ("resend://k@", "h2", "esp"),
        ("postmark://t@", "httpx", "esp"),
    ],
)
def test_a_missing_extra_is_one_clear_line(
    monkeypatch: pytest.MonkeyPatch, url: str, module: str, extra: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(BackendError) as caught:
        sender_from_url(url)
    assert str(caught.value).endswith(f"needs the {module} package: pip install 'mailq[{extra}]'")
    assert "\n" not in str(caught.value)


def test_parts_and_the_mime_agree_on_an_inline_image() -> None:
    built = full(3)
    assert built.parts is not None
    assert [(a.filename, a.content_id) for a in built.parts.attachments] == [
        ("report.pdf", None),
        ("logo.png", "logo"),
    ]
    assert dict(built.parts.headers) == {"X-Campaign": "spring"}
    assert built.parts.bcc == ("bo@example.com",) and built.parts.kind == "welcome"
    parsed = email.message_from_bytes(built.data, policy=policy.default)
    assert parsed.get_content_type() == "multipart/mixed"
    # mixed( alternative( text, related( html, logo ) ), report ): the inline image goes with
    # the HTML that shows it (RFC 2387).
    alternative, report = parsed.iter_parts()
    assert alternative.get_content_type() == "multipart/alternative"
    _text, related = alternative.iter_parts()
    assert related.get_content_type() == "multipart/related"
    _html, logo = related.iter_parts()
    assert logo["Content-ID"] == "<logo>" and logo.get_content_disposition() == "inline"
    assert logo.get_content() == PNG
    assert report.get_content_disposition() == "attachment"
    assert report.get_filename() == "report.pdf"
