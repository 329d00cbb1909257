"""Alembic environment: raw-SQL revisions, no ORM metadata, DSN from the environment."""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import create_engine, pool, text

VERSION_TABLE_SCHEMA = "mailq"


def _sqlalchemy_url() -> str:
    url = context.config.attributes.get("url") or os.environ.get("MAILQ_DATABASE_URL")
    if not url:
        raise SystemExit("MAILQ_DATABASE_URL is not set: alembic needs the queue's database URL")
    # SQLAlchemy needs the driver named; psycopg 3 is the sync driver we ship.
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def run_migrations_online() -> None:
    engine = create_engine(_sqlalchemy_url(), poolclass=pool.NullPool)
    with engine.connect() as connection:
        # The version table lives in our own schema, so it must exist before Alembic looks.
        connection.execute(text("CREATE SCHEMA IF NOT EXISTS mailq"))
        connection.commit()
        context.configure(
            connection=connection,
            target_metadata=None,
            version_table_schema=VERSION_TABLE_SCHEMA,
            transaction_per_migration=True,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run against a database")
run_migrations_online()
