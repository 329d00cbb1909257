"""`mailq enqueue --file F.jsonl`: bulk enqueue, one email (its JSON form, as `POST /v1/emails`
takes it) per line; all or nothing, in one transaction."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
from collections.abc import Iterator
from typing import Any, TextIO

import asyncpg

from mailq.cli import display
from mailq.cli.command import CliError
from mailq.cli.options import configured, database_url, existing_file
from mailq.config import Config
from mailq.db.schema import ensure_current
from mailq.enqueue import build_rows, enqueue_rows
from mailq.errors import InvalidEmail
from mailq.models import EmailRow
from mailq.settings import Settings
from mailq.wire import email_from_json

ENQUEUE_CHUNK = 10_000


def email_lines(stream: TextIO) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, JSON object) of each line that is not blank."""
    for number, line in _lines(stream):
        if not line.strip():
            continue
        try:
            value = json.loads(line, parse_float=_finite, parse_constant=_no_constant)
        except json.JSONDecodeError as exc:
            raise CliError(f"line {number}: not JSON ({exc.msg})") from None
        except RecursionError:
            raise CliError(f"line {number}: not acceptable JSON (nested too deeply)") from None
        except ValueError as exc:
            # int() refuses more than 4,300 digits with a paragraph of advice.
            detail = "a number with too many digits" if "digits" in str(exc) else str(exc)
            raise CliError(f"line {number}: not acceptable JSON ({detail})") from None
        if not isinstance(value, dict):
            raise CliError(f"line {number}: each line must be a JSON object")
        yield number, value


def _lines(stream: TextIO) -> Iterator[tuple[int, str]]:
    number = 0
    while True:
        number += 1
        try:
            line = stream.readline()
        except UnicodeDecodeError:
            raise CliError(f"line {number}: not UTF-8 text") from None
        if not line:
            return
        yield number, line


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def email_rows(stream: TextIO, settings: Settings, config: Config) -> Iterator[EmailRow]:
    """The row of each line's email; CliError naming the line of the first bad one."""
    for number, data in email_lines(stream):
        try:
            yield from build_rows(
                [email_from_json(data)],
                default_from=settings.from_address,
                kinds=config.kinds,
                templates=config.templates,
            )
        except InvalidEmail as exc:
            raise CliError(f"line {number}: {exc}") from None


async def enqueue_file(
    settings: Settings, stream: TextIO, config: Config, expected: int | None
) -> int:
    conn = await asyncpg.connect(database_url(settings))
    try:
        await ensure_current(conn)
        total = 0
        # All or nothing: every line is validated and written in one transaction.
        with display.progress("queueing emails", expected) as tracker:
            async with conn.transaction():
                rows: list[EmailRow] = []
                for row in email_rows(stream, settings, config):
                    rows.append(row)
                    if len(rows) >= ENQUEUE_CHUNK:
                        total += len(await enqueue_rows(conn, rows))
                        tracker.advance(len(rows))
                        rows = []
                total += len(await enqueue_rows(conn, rows))
                tracker.advance(len(rows))
        return total
    finally:
        await conn.close()


def cmd_enqueue(args: argparse.Namespace) -> int:
    settings, config = configured(args)
    if args.file == "-":
        count = asyncio.run(enqueue_file(settings, sys.stdin, config, None))
    else:
        with existing_file(args.file, "--file").open(encoding="utf-8") as stream:
            expected = sum(1 for _, line in _lines(stream) if line.strip())
            stream.seek(0)
            count = asyncio.run(enqueue_file(settings, stream, config, expected))
    print(f"queued {count} emails")
    return 0


def add_commands(commands: Any) -> None:
    enqueue = commands.add_parser("enqueue", help="bulk enqueue emails from a JSON-lines file")
    enqueue.add_argument("--file", required=True, help="a .jsonl file, or - for stdin")
    enqueue.set_defaults(handler=cmd_enqueue)
