"""A fresh database per measurement, on the server the admin URL names.

The schema is migrated once per run into a template database; each measurement gets its own
copy (CREATE DATABASE … TEMPLATE) and drops it afterwards. Names are generated here and
validated: they are the only values ever written into SQL text.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import LiteralString
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from mailq.db.schema import migrate
from mailq.errors import MailqError

_SAFE_NAME = re.compile(r"^mailq_bench_[a-z0-9_]{1,40}$")


class BenchError(MailqError):
    """The benchmark cannot go on (bad setup, a measurement that failed)."""


def with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


def _checked(name: str) -> LiteralString:
    if not _SAFE_NAME.match(name):
        raise BenchError(f"unsafe database name {name!r}")
    # Checked above: a generated name of safe characters only.
    return name


def new_name(purpose: str) -> str:
    return f"mailq_bench_{purpose}_{uuid.uuid4().hex[:12]}"


class Server:
    """The Postgres server the bench runs on, reached through an admin URL."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.template: str | None = None
        # Further templates made during the run (e.g. the history's), by purpose.
        self.templates: dict[str, str] = {}

    async def _admin(self, statement: LiteralString) -> None:
        conn = await asyncpg.connect(self.admin_url)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    async def prepare(self) -> None:
        """Create the migrated template every measurement's database is cloned from."""
        name = new_name("tpl")
        await self._admin("CREATE DATABASE " + _checked(name))
        self.template = name
        await asyncio.to_thread(migrate, with_database(self.admin_url, name))

    async def close(self) -> None:
        for name in self.templates.values():
            await self.drop(name)
        self.templates.clear()
        if self.template:
            await self.drop(self.template)
            self.template = None

    async def drop(self, name: str) -> None:
        await self._admin("DROP DATABASE IF EXISTS " + _checked(name) + " WITH (FORCE)")

    async def prepare_copy(self, purpose: str) -> str:
        """A new database cloned from the template (e.g. to be filled with history and
        cloned again); the caller drops it with `drop`."""
        if self.template is None:
            raise BenchError("the server's template is not prepared")
        name = new_name(purpose)
        await self._admin(
            "CREATE DATABASE " + _checked(name) + " TEMPLATE " + _checked(self.template)
        )
        return name

    @asynccontextmanager
    async def fresh_database(
        self, purpose: str, template: str | None = None, *, file_copy: bool = False
    ) -> AsyncIterator[str]:
        """A migrated database for one measurement (a copy of `template`, by default the
        run's migrated template); yields its URL, dropped on exit."""
        source = template or self.template
        if source is None:
            raise BenchError("the server's template is not prepared")
        name = new_name(purpose)
        # A large template (the history's) copies much faster file by file than through
        # the WAL (PostgreSQL 15's default strategy), at the price of two checkpoints.
        strategy: LiteralString = " STRATEGY FILE_COPY" if file_copy else ""
        await self._admin(
            "CREATE DATABASE " + _checked(name) + " TEMPLATE " + _checked(source) + strategy
        )
        try:
            yield with_database(self.admin_url, name)
        finally:
            await self.drop(name)
