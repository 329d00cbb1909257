"""`mailq migrate`: bring the queue's schema to the newest revision (Alembic)."""

from __future__ import annotations

import argparse
from typing import Any

from mailq.cli.options import database_url, settings_for
from mailq.db.schema import HEAD, migrate


def cmd_migrate(args: argparse.Namespace) -> int:
    migrate(database_url(settings_for(args)))
    print(f"schema is at {HEAD}")
    return 0


def add_commands(commands: Any) -> None:
    migrate_command = commands.add_parser("migrate", help="bring the schema to the newest revision")
    migrate_command.set_defaults(handler=cmd_migrate)
