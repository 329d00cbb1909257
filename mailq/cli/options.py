"""What the commands share: the settings with the command's flags on top, the connection to
the queue, the `--json`/`--database-url` options of the operator's commands, and the parsing
of what operators type (email ids, times, @FILE bodies)."""

from __future__ import annotations

import argparse
import re
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import asyncpg

from mailq.cli import display
from mailq.cli.command import CliError
from mailq.config import Config, load_settings
from mailq.db import embedded
from mailq.db.schema import ensure_current
from mailq.errors import UsageError
from mailq.settings import Settings

T = TypeVar("T")
PROGRESS_EVERY = 1_000
MAX_EMAIL_ID = 2**63 - 1
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


# -- settings and the database -------------------------------------------------------------


def configured(args: argparse.Namespace) -> tuple[Settings, Config]:
    """Settings from the environment and the MAILQ_CONFIG file, then the command's flags."""
    settings, config = load_settings()
    return with_flags(settings, args), config


def settings_for(args: argparse.Namespace) -> Settings:
    return configured(args)[0]


def with_flags(settings: Settings, args: argparse.Namespace) -> Settings:
    """`settings` with the command's --database-url and --concurrency on top."""
    changes: dict[str, Any] = {}
    if getattr(args, "database_url", None):
        changes["database_url"] = args.database_url
    if getattr(args, "concurrency", None) is not None:
        changes["concurrency"] = args.concurrency
    return settings.with_overrides(**changes) if changes else settings


def database_url(settings: Settings) -> str:
    """MAILQ_DATABASE_URL, or the embedded PostgreSQL under MAILQ_HOME (with a warning)."""
    return embedded.database_url(settings)


@asynccontextmanager
async def connect(args: argparse.Namespace) -> AsyncIterator[asyncpg.Pool]:
    """A small pool on the queue's database, its schema checked."""
    pool = await asyncpg.create_pool(database_url(settings_for(args)), min_size=1, max_size=2)
    assert pool is not None
    try:
        await ensure_current(pool)
        yield pool
    finally:
        await pool.close()


def add_command(commands: Any, name: str, handler: Any, help: str) -> argparse.ArgumentParser:
    """One operator's command, with --json and --database-url."""
    parser: argparse.ArgumentParser = commands.add_parser(name, help=help, description=help)
    parser.add_argument("--json", action="store_true", help="print JSON (for machines)")
    # Also after the command; SUPPRESS keeps a value given before it.
    parser.add_argument(
        "--database-url", default=argparse.SUPPRESS, help="overrides MAILQ_DATABASE_URL"
    )
    parser.set_defaults(handler=handler)
    return parser


# -- what operators type -------------------------------------------------------------------


def email_ids(raw: list[str]) -> list[int]:
    ids = []
    for value in raw:
        if not value.isdigit() or int(value) == 0 or int(value) > MAX_EMAIL_ID:
            raise UsageError(f"{value!r} is not an email id (ids are positive whole numbers)")
        ids.append(int(value))
    return ids


def moment(raw: str, now: datetime | None = None) -> datetime:
    """A time an operator typed: RFC 3339 with an offset, a date (midnight UTC), or a
    duration ago (`90s`, `30m`, `6h`, `2d`)."""
    now = now or datetime.now(UTC)
    match = _DURATION.match(raw.strip())
    if match:
        return now - timedelta(seconds=float(match.group(1)) * _UNIT_S[match.group(2)])
    try:
        value = datetime.fromisoformat(raw.strip())
    except ValueError:
        raise UsageError(
            f"{raw!r} is not a time: use e.g. 2h, 3d, 2025-05-01 or 2025-05-01T08:00:00+00:00"
        ) from None
    if value.tzinfo is None:
        if len(raw.strip()) == 10:  # a bare date
            return value.replace(tzinfo=UTC)
        raise UsageError(f"{raw!r} has no UTC offset: add one, e.g. {raw.strip()}+00:00")
    return value


def read_option(value: str | None, flag: str) -> str | None:
    """A body given as @FILE is read from that file; otherwise it is the text itself."""
    if value is None or not value.startswith("@"):
        return value
    path = Path(value[1:])
    try:
        return path.read_text("utf-8")
    except OSError as exc:
        raise CliError(f"{flag}: cannot read {path}: {exc.strerror or exc}") from None


def existing_file(name: str, flag: str) -> Path:
    path = Path(name)
    if not path.is_file():
        raise CliError(f"{flag}: {path} does not exist")
    return path


def counted(items: Iterable[T], tracker: display.Tracker) -> Iterator[T]:
    """Pass items through, advancing a progress display every PROGRESS_EVERY."""
    pending = 0
    for item in items:
        yield item
        pending += 1
        if pending == PROGRESS_EVERY:
            tracker.advance(pending)
            pending = 0
    tracker.advance(pending)


def plural(count: int, word: str, words: str | None = None) -> str:
    return f"{count} {word if count == 1 else words or word + 's'}"
