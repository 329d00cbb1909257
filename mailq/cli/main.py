"""The `mailq` command: its parser, made of one module per command group, and main().

Reads the environment (Settings.from_env, in mailq.cli.options) and configures logging
(mailq.cli.command.run); everything below it gets its settings passed in."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from mailq.cli import (
    bench,
    bounces,
    campaign,
    enqueue,
    migrate,
    monitor,
    serve,
    suppression,
    up,
    worker,
)
from mailq.cli.command import Parser, run

# In the order `mailq --help` lists them.
COMMAND_GROUPS = (
    migrate,
    worker,
    enqueue,
    serve,
    up,
    monitor,
    suppression,
    campaign,
    bounces,
    bench,
)


def parser() -> argparse.ArgumentParser:
    mailq = Parser(prog="mailq", description="A Postgres-native email queue.")
    mailq.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING (default INFO)")
    mailq.add_argument("--database-url", help="overrides MAILQ_DATABASE_URL")
    commands = mailq.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in COMMAND_GROUPS:
        group.add_commands(commands)
    _database_url_everywhere(commands)
    return mailq


def _database_url_everywhere(commands: argparse._SubParsersAction[Any]) -> None:
    """`--database-url` after any command too (`mailq migrate --database-url URL`), as
    before it; SUPPRESS keeps a value given before the command."""
    for command in commands.choices.values():
        nested = [a for a in command._actions if isinstance(a, argparse._SubParsersAction)]
        for group in nested:
            _database_url_everywhere(group)
        if nested or "--database-url" in command._option_string_actions:
            continue
        command.add_argument(
            "--database-url", default=argparse.SUPPRESS, help="overrides MAILQ_DATABASE_URL"
        )


def main(argv: Sequence[str] | None = None) -> int:
    return run(argv, parser())
