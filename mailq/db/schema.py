"""Which schema this code was written for, checked before a worker or the service starts."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg

from mailq.db.connection import unavailable
from mailq.db.queries import QUERIES
from mailq.errors import SchemaMismatch

if TYPE_CHECKING:
    from alembic.config import Config

# Every Alembic revision, oldest first; the last is the one this code needs.
# tests/db/test_migrations.py checks this list against migrations/versions.
REVISIONS: tuple[str, ...] = (
    "0001_create_queue",
    "0002_email_features",
    "0003_operators",
    "0004_service",
    "0005_display_names",
    "0006_outages",
    "0007_bounces",
    "0008_dashboard",
    "0010_dashboard_counts",
    "0011_bounce_policy",
    "0012_dashboard_overview",
    "0013_message_id_btree",
    "0014_open_address_no_campaigns",
)
HEAD = REVISIONS[-1]


def migrations_folder() -> Path:
    """The Alembic revisions: the package mailq.migrations (the repository's migrations/ folder,
    which the wheel ships under that name)."""
    spec = importlib.util.find_spec("mailq.migrations")
    if spec is None or not spec.submodule_search_locations:
        raise SchemaMismatch("mailq's migrations are missing from this installation: reinstall it")
    return Path(next(iter(spec.submodule_search_locations)))


def check_revision(found: str | None) -> None:
    """Raise SchemaMismatch unless `found` is the revision this code needs."""
    if found == HEAD:
        return
    if found is None:
        raise SchemaMismatch("the database has no mailq schema yet: run `mailq migrate`")
    if found in REVISIONS:
        raise SchemaMismatch(
            f"the database schema is at {found}, older than {HEAD}: run `mailq migrate`"
        )
    raise SchemaMismatch(
        f"the database schema is at {found}, which this mailq does not know "
        f"(it knows up to {HEAD}): upgrade mailq"
    )


async def current_revision(conn: asyncpg.Connection | asyncpg.Pool) -> str | None:
    try:
        value: Any = await conn.fetchval(QUERIES["schema_revision"])
    except (asyncpg.UndefinedTableError, asyncpg.InvalidSchemaNameError):
        return None
    return None if value is None else str(value)


async def ensure_current(conn: asyncpg.Connection | asyncpg.Pool) -> None:
    check_revision(await current_revision(conn))


def alembic_config(database_url: str) -> Config:
    """Alembic's configuration, built here rather than read from alembic.ini (which exists only
    in a checkout)."""
    from alembic.config import Config  # Alembic (and SQLAlchemy) load only to migrate.

    config = Config()
    config.set_main_option("script_location", str(migrations_folder()))
    config.attributes["url"] = database_url
    return config


def migrate(database_url: str, revision: str = "head") -> None:
    """Bring the schema to `revision` with Alembic (what `mailq migrate` runs)."""
    from alembic import command
    from sqlalchemy.exc import OperationalError

    try:
        command.upgrade(alembic_config(database_url), revision)
    except OperationalError as exc:  # SQLAlchemy's wrapper of psycopg's
        raise unavailable(exc.orig or exc) from None


def downgrade(database_url: str, revision: str = "base") -> None:
    from alembic import command

    command.downgrade(alembic_config(database_url), revision)
