"""Where the tests find PostgreSQL, and one fresh database per test cloned from a migrated
template (so every test also starts from what the migrations build)."""

from __future__ import annotations

import os
import re
import tempfile
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

from mailq.db.schema import migrate

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


# Durability off on servers the tests start themselves: faster, and nothing to keep.
TEST_SERVER_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "jit": "off"}


@contextmanager
def server_url() -> Iterator[str]:
    """An admin URL of a server where tests may create databases: MAILQ_TEST_DATABASE_URL,
    else an embedded pgserver in a temporary folder, else a testcontainers PostgreSQL."""
    configured = os.environ.get("MAILQ_TEST_DATABASE_URL")
    if configured:
        try:
            _execute_admin(configured, "SELECT 1")
        except psycopg.OperationalError as exc:
            raise NoDatabase(f"MAILQ_TEST_DATABASE_URL is set but unreachable: {exc}") from exc
        yield configured
        return
    problems: list[str] = []
    for candidate in (_pgserver, _testcontainer):
        try:
            with candidate() as url:
                _tune(url)
                yield url
                return
        except NoDatabase as exc:
            problems.append(str(exc))
    raise NoDatabase(
        "no PostgreSQL for the tests: set MAILQ_TEST_DATABASE_URL (" + "; ".join(problems) + ")"
    )


@contextmanager
def _pgserver() -> Iterator[str]:
    try:
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset (CI, containers): harmless.
            warnings.simplefilter("ignore")
            import pgserver
    except ImportError:
        raise NoDatabase("pgserver is not installed") from None
    # pgserver run as root creates a system user and opens the data folder's parents:
    # keep its data in a private temporary folder.
    with tempfile.TemporaryDirectory(prefix="mailq-test-pg-") as folder:
        try:
            server = pgserver.get_server(Path(folder), cleanup_mode="stop")
        except Exception as exc:  # pgserver raises bare subprocess and OS errors
            raise NoDatabase(f"pgserver did not start: {exc}") from exc
        try:
            yield server.get_uri()
        finally:
            server.cleanup()


@contextmanager
def _testcontainer() -> Iterator[str]:
    try:
        from testcontainers.postgres import PostgresContainer
    except ImportError:
        raise NoDatabase(
            "testcontainers is not installed (pip install -e '.[containers]')"
        ) from None
    try:
        container = PostgresContainer("postgres:16", driver=None).start()
    except Exception as exc:  # no Docker engine, image not pullable, ...
        raise NoDatabase(f"testcontainers could not start PostgreSQL: {exc}") from exc
    try:
        yield container.get_connection_url()
    finally:
        container.stop()


def _tune(admin_url: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        for name, value in TEST_SERVER_SETTINGS.items():
            conn.execute(f"ALTER SYSTEM SET {name} = {value}")  # type: ignore[arg-type]
        conn.execute("SELECT pg_reload_conf()")


@contextmanager
def migrated_template(admin_url: str) -> Iterator[str]:
    name = f"mailq_tpl_{uuid.uuid4().hex[:12]}"
    url = create_database(admin_url, name)
    try:
        migrate(url)
        yield name
    finally:
        drop_database(admin_url, name)


@contextmanager
def embedded_home() -> Iterator[Path]:
    """A MAILQ_HOME for tests that start the embedded PostgreSQL. Not under pytest's tmp_path:
    run as root, pgserver's own user must traverse the parents of its data folder, and every
    pytest session that starts (another run on the same machine) resets
    /tmp/pytest-of-root to mode 0700."""
    with tempfile.TemporaryDirectory(prefix="mailq-home-") as folder:
        yield Path(folder) / "home"
