from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.support import postfix, postgres
from tests.support.smtp import SmtpSink

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    # In CI a skipped test is a failure: a missing database or SMTP server must be loud.
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, which counts as a failure: {report.longrepr}"


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    with postgres.server_url() as url:
        yield url


@pytest.fixture(scope="session")
def template_name(pg_admin_url: str) -> Iterator[str]:
    with postgres.migrated_template(pg_admin_url) as name:
        yield name


@pytest.fixture
def database_name() -> str:
    return f"mailq_t_{uuid.uuid4().hex[:16]}"


@pytest.fixture
def database_url(pg_admin_url: str, template_name: str, database_name: str) -> Iterator[str]:
    """A fresh, migrated database for this test alone."""
    url = postgres.create_database(pg_admin_url, database_name, template=template_name)
    try:
        yield url
    finally:
        postgres.drop_database(pg_admin_url, database_name)


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(database_url)
    try:
        yield connection
    finally:
        await connection.close()


@pytest.fixture
def mailq_home() -> Iterator[Path]:
    """An empty MAILQ_HOME where the embedded PostgreSQL can start (see postgres.embedded_home)."""
    with postgres.embedded_home() as home:
        yield home


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    sink = SmtpSink()
    sink.start()
    try:
        yield sink
    finally:
        sink.stop()


@pytest.fixture(scope="session")
def postfix_server() -> Iterator[postfix.PostfixMta]:
    """One private Postfix MTA (with Dovecot SASL) for the session: tests/support/postfix.py."""
    reason = postfix.missing()
    if reason is not None:
        pytest.skip(reason)
    with postfix.private_postfix() as mta:
        yield mta


@pytest.fixture
def postfix_mta(postfix_server: postfix.PostfixMta) -> postfix.PostfixMta:
    """The session's Postfix, its queue drained and its Maildir empty."""
    postfix_server.reset()
    return postfix_server
