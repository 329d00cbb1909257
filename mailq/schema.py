"""Which schema this code was written for, checked before a worker or the service starts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg

from mailq.errors import SchemaMismatch
from mailq.sql import QUERIES

# Every Alembic revision, oldest first; the last is the one this code needs.
# tests/integration/test_migrations.py checks this list against migrations/versions.
REVISIONS: tuple[str, ...] = (
    "0001_create_queue",
    "0002_email_features",
    "0003_operators",
    "0004_service",
)
HEAD = REVISIONS[-1]
REPO_ROOT = Path(__file__).resolve().parent.parent
ALEMBIC_INI = REPO_ROOT / "alembic.ini"


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


def migrate(database_url: str, revision: str = "head") -> None:
    """Bring the schema to `revision` with Alembic (what `mailq migrate` runs)."""
    from alembic import command
    from alembic.config import Config

    config = Config(str(ALEMBIC_INI))
    config.attributes["url"] = database_url
    command.upgrade(config, revision)


def downgrade(database_url: str, revision: str = "base") -> None:
    from alembic import command
    from alembic.config import Config

    config = Config(str(ALEMBIC_INI))
    config.attributes["url"] = database_url
    command.downgrade(config, revision)
