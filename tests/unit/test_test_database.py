"""Where the tests find PostgreSQL: the configured URL, else pgserver, else testcontainers,
and a message naming all three when none is there."""

from __future__ import annotations

import sys

import pytest

from tests.support import postgres


def test_with_nothing_installed_the_message_says_what_to_do(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MAILQ_TEST_DATABASE_URL", raising=False)
    # None in sys.modules makes `import x` raise ImportError.
    for module in ("pgserver", "testcontainers", "testcontainers.postgres"):
        monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(postgres.NoDatabase) as caught, postgres.server_url():
        pass
    message = str(caught.value)
    assert "MAILQ_TEST_DATABASE_URL" in message
    assert "pgserver is not installed" in message
    assert "testcontainers is not installed" in message


def test_an_unreachable_configured_url_is_an_error_not_a_fallback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MAILQ_TEST_DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    with pytest.raises(postgres.NoDatabase, match="set but unreachable"), postgres.server_url():
        pass
