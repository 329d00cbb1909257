"""Where the tests find PostgreSQL, and one fresh database per test cloned from a migrated
template (so every test also starts from what the migrations build)."""

from __future__ import annotations

import os
import re
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

from mailq.schema import migrate

_SAFE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


class NoDatabase(Exception):
    """No PostgreSQL could be found or started for the tests."""


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


def _execute_admin(admin_url: str, statement: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(statement)  # type: ignore[arg-type]


def create_database(admin_url: str, name: str, template: str | None = None) -> str:
    # The only dynamic SQL in the project: names are generated here and validated.
    if not _SAFE_NAME.match(name) or (template and not _SAFE_NAME.match(template)):
        raise ValueError(f"unsafe database name {name!r}")
    suffix = f" TEMPLATE {template}" if template else ""
    _execute_admin(admin_url, f"CREATE DATABASE {name}{suffix}")
    return with_database(admin_url, name)


def drop_database(admin_url: str, name: str) -> None:
    if not _SAFE_NAME.match(name):
        raise ValueError(f"unsafe database name {name!r}")
    _execute_admin(admin_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def terminate_backends(admin_url: str, name: str) -> int:
    """Cut every connection to one test database (a stand-in for a Postgres restart that
    leaves the shared server alone)."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        ).fetchall()
    return len(rows)


@contextmanager
def server_url() -> Iterator[str]:
    """An admin URL of a server where tests may create databases."""
    configured = os.environ.get("MAILQ_TEST_DATABASE_URL")
    if configured:
        try:
            _execute_admin(configured, "SELECT 1")
        except psycopg.OperationalError as exc:
            raise NoDatabase(f"MAILQ_TEST_DATABASE_URL is set but unreachable: {exc}") from exc
        yield configured
        return
    try:
        import pgserver
    except ImportError:
        pgserver = None
    if pgserver is not None:
        # pgserver run as root creates a system user and opens the data folder's parents:
        # keep its data in a private temporary folder.
        with tempfile.TemporaryDirectory(prefix="mailq-test-pg-") as folder:
            server = pgserver.get_server(Path(folder), cleanup_mode="stop")
            try:
                yield server.get_uri()
            finally:
                server.cleanup()
        return
    try:
        from testcontainers.postgres import PostgresContainer
    except ImportError:
        raise NoDatabase(
            "no PostgreSQL for the tests: set MAILQ_TEST_DATABASE_URL, or install pgserver "
            "or testcontainers"
        ) from None
    with PostgresContainer("postgres:16", driver=None) as container:
        yield container.get_connection_url()


@contextmanager
def migrated_template(admin_url: str) -> Iterator[str]:
    name = f"mailq_tpl_{uuid.uuid4().hex[:12]}"
    url = create_database(admin_url, name)
    try:
        migrate(url)
        yield name
    finally:
        drop_database(admin_url, name)
