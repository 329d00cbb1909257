"""What the commands share: the settings with the command's flags on top, the connection to
the queue, the `--json`/`--database-url` options of the operator's commands, and the parsing
of what operators type (email ids, times, @FILE bodies)."""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import asyncpg

from mailq.admin import check_kind, paused_kinds
from mailq.cli import display
from mailq.cli.command import CliError
from mailq.config import Config, load_settings
from mailq.db import embedded
from mailq.db.emails import email_count_by_state
from mailq.db.schema import ensure_current
from mailq.errors import UsageError, quoted
from mailq.kinds import BUILTIN_KINDS
from mailq.settings import Settings
from mailq.validation import unknown_kind_message

T = TypeVar("T")
PROGRESS_EVERY = 1_000
MAX_EMAIL_ID = 2**63 - 1
# The most a `--limit` may ask for, and the most days `--older-than` may say (100 years).
MAX_COUNT = 100_000
MAX_DAYS = 36_500
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


async def listed_kind(pool: asyncpg.Pool, args: argparse.Namespace) -> str | None:
    """The --kind to list: a configured kind, or one that emails in the queue have (the
    configuration may have dropped it since); any other is a typo, refused (exit 2)."""
    if not args.kind:
        return None
    kind = check_kind(args.kind)
    kinds = configured(args)[1].kinds
    if kind in kinds or any(r["kind"] == kind for r in await email_count_by_state(pool)):
        return kind
    raise UsageError(unknown_kind_message(kind, kinds))


async def paused_kind(pool: asyncpg.Pool, kind: str) -> None:
    """A kind to pause or resume: built in, or one the queue has seen (emails, pauses)."""
    check_kind(kind)
    if kind in BUILTIN_KINDS:
        return
    known = {r["kind"] for r in await email_count_by_state(pool)}
    known |= set(await paused_kinds(pool))
    if kind not in known:
        raise UsageError(
            f"unknown kind {kind!r}: no email of it was ever queued (known kinds: "
            f"{', '.join(sorted(known | set(BUILTIN_KINDS)))})"
        )


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
        if (
            not (value.isascii() and value.isdigit())
            or len(value) > 19
            or int(value) == 0
            or int(value) > MAX_EMAIL_ID
        ):
            raise UsageError(f"{quoted(value)} is not an email id (ids are positive whole numbers)")
        ids.append(int(value))
    return ids


def moment(raw: str, now: datetime | None = None) -> datetime:
    """A time an operator typed: RFC 3339 with an offset, a date (midnight UTC), or a
    duration ago (`90s`, `30m`, `6h`, `2d`)."""
    now = now or datetime.now(UTC)
    match = _DURATION.match(raw.strip())
    if match:
        try:
            return now - timedelta(seconds=float(match.group(1)) * _UNIT_S[match.group(2)])
        except (OverflowError, ValueError):
            raise UsageError(f"{quoted(raw)} is too long ago (before the year 1)") from None
    try:
        value = datetime.fromisoformat(raw.strip())
    except ValueError:
        raise UsageError(
            f"{quoted(raw)} is not a time: use e.g. 2h, 3d, 2025-05-01 or 2025-05-01T08:00:00+00:00"
        ) from None
    if value.tzinfo is None:
        if len(raw.strip()) == 10:  # a bare date
            return value.replace(tzinfo=UTC)
        raise UsageError(f"{quoted(raw)} has no UTC offset: add one, e.g. {raw.strip()}+00:00")
    return value


def list_limit(value: str) -> int:
    """An argparse type: a whole number from 1 to MAX_COUNT (`--limit`)."""
    if not (value.isascii() and value.isdigit() and len(value) <= 9) or not int(value) >= 1:
        raise argparse.ArgumentTypeError(f"{quoted(value)}: a whole number from 1 to {MAX_COUNT}")
    if int(value) > MAX_COUNT:
        raise argparse.ArgumentTypeError(f"{value}: at most {MAX_COUNT}")
    return int(value)


def days(value: str) -> float:
    """An argparse type: a number of days, finite, from 0 to MAX_DAYS (`--older-than`)."""
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{quoted(value)}: not a number of days") from None
    if not math.isfinite(number) or not 0 <= number <= MAX_DAYS:
        raise argparse.ArgumentTypeError(f"{quoted(value)}: a number of days from 0 to {MAX_DAYS}")
    return number


def read_option(value: str | None, flag: str) -> str | None:
    """A body given as @FILE is read from that file; otherwise it is the text itself."""
    if value is None or not value.startswith("@"):
        return value
    path = Path(value[1:])
    try:
        return path.read_text("utf-8")
    except OSError as exc:
        raise CliError(f"{flag}: cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise CliError(f"{flag}: {path} is not UTF-8 text") from None


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
