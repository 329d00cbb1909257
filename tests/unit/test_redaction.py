"""Secrets out of every line mailq prints or logs (issue 11, case 7)."""

from __future__ import annotations

import logging

import pytest

from mailq.delivery.backends import sender_from_url
from mailq.errors import BackendError
from mailq.logs import KeyValueFormatter
from mailq.redaction import redact, redact_url


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("smtp://user:pa%40ss@relay:587", "smtp://***@relay:587"),
        ("postmark://SERVER-TOKEN@", "postmark://***@"),
        ("mailgun://key-123@mg.example.com?region=eu", "mailgun://***@mg.example.com?region=eu"),
        (
            "cannot reach postgresql://app:pw@db/mail: refused",
            "cannot reach postgresql://***@db/mail: refused",
        ),
        (
            "host=db user=app password=hunter2 dbname=mail",
            "host=db user=app password=*** dbname=mail",
        ),
        ("smtp://relay:25 and file:///tmp/outbox", "smtp://relay:25 and file:///tmp/outbox"),
    ],
)
def test_the_whole_userinfo_is_hidden(text: str, shown: str) -> None:
    assert redact(text) == shown


def test_a_url_keeps_its_host_and_query() -> None:
    assert redact_url("smtps://u:p@relay.example.com:465?tls=none") == (
        "smtps://***@relay.example.com:465?tls=none"
    )
    assert redact_url("smtp://relay:25") == "smtp://relay:25"


def test_log_lines_and_backend_errors_carry_no_password() -> None:
    record = logging.makeLogRecord(
        {"msg": "connect to %s failed", "args": ("smtp://u:hunter2@relay",), "levelname": "ERROR"}
    )
    record.backend = "postmark://tok-456@"
    line = KeyValueFormatter("%(levelname)s %(message)s").format(record)
    assert "hunter2" not in line and "tok-456" not in line
    assert "smtp://***@relay" in line and "postmark://***@" in line
    for url in ("smtp://u:hunter2@:25", "smtp://u:hunter2@relay:port", "file://u:hunter2@h/x"):
        with pytest.raises(BackendError) as refused:
            sender_from_url(url)
        assert "hunter2" not in str(refused.value)
