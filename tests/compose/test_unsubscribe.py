"""Signed unsubscribe tokens and the List-Unsubscribe headers (RFC 8058)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailq.compose.unsubscribe import UnsubscribeLinks, load_secret_key, make_token, read_token
from mailq.errors import InvalidToken
from mailq.settings import Settings

SECRET = b"k" * 32


def test_a_token_names_its_address_and_cannot_be_forged() -> None:
    token = make_token(SECRET, "Ann@Example.com")
    assert read_token(SECRET, token) == "ann@example.com"
    with pytest.raises(InvalidToken):
        read_token(b"another key", token)
    forged = make_token(b"another key", "bob@example.com").split(".")[0] + "." + token.split(".")[1]
    with pytest.raises(InvalidToken):
        read_token(SECRET, forged)
    for bad in ("", "no-dot", "a.b.c", "!!!.???"):
        with pytest.raises(InvalidToken):
            read_token(SECRET, bad)


def test_headers_carry_mailto_and_https_one_click() -> None:
    links = UnsubscribeLinks(SECRET, "https://mail.example.com/", "unsub@example.com")
    headers = dict(links.headers("ann@example.com", "news@example.com"))
    mailto, url = headers["List-Unsubscribe"].split(", ")
    assert mailto == "<mailto:unsub@example.com?subject=unsubscribe>"
    assert url.startswith("<https://mail.example.com/v1/unsubscribe/")
    assert read_token(SECRET, url.rstrip(">").rsplit("/", 1)[1]) == "ann@example.com"
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_a_plain_http_url_gets_no_one_click_promise() -> None:
    links = UnsubscribeLinks(SECRET, "http://127.0.0.1:8000")
    headers = dict(links.headers("ann@example.com", "news@example.com"))
    assert "mailto:news@example.com" in headers["List-Unsubscribe"]
    assert "List-Unsubscribe-Post" not in headers


def test_the_secret_key_is_generated_once_and_kept_private(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    key = load_secret_key(settings)
    assert len(key) >= 32 and load_secret_key(settings) == key
    assert (tmp_path / "home" / "secret_key").stat().st_mode & 0o777 == 0o600
    assert load_secret_key(Settings(home=tmp_path, secret_key="given")) == b"given"
