"""The `mailq` command. Reads the environment (Settings.from_env) and configures logging;
everything below it gets its settings passed in."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from mailq import logs
from mailq.config import Config, load_settings
from mailq.errors import MailqError
from mailq.kinds import KIND_NAME
from mailq.settings import Settings

EXIT_USAGE = 2


class CliError(MailqError):
    """A command cannot go on; the message is printed as one line on stderr."""


def _settings(args: argparse.Namespace) -> Settings:
    return _configured(args)[0]


def _configured(args: argparse.Namespace) -> tuple[Settings, Config]:
    """Settings from the environment and the MAILQ_CONFIG file, then the command's flags."""
    settings, config = load_settings()
    changes: dict[str, Any] = {}
    if getattr(args, "database_url", None):
        changes["database_url"] = args.database_url
    if getattr(args, "concurrency", None) is not None:
        changes["concurrency"] = args.concurrency
    return (settings.with_overrides(**changes) if changes else settings), config


def _database_url(settings: Settings) -> str:
    if not settings.database_url:
        raise CliError("MAILQ_DATABASE_URL is not set (or pass --database-url)")
    return settings.database_url


# -- migrate -------------------------------------------------------------------------------


def cmd_migrate(args: argparse.Namespace) -> int:
    from mailq.schema import HEAD, migrate

    settings = _settings(args)
    migrate(_database_url(settings))
    print(f"schema is at {HEAD}")
    return 0


# -- worker --------------------------------------------------------------------------------


def _parse_kinds(raw: str | None) -> list[str] | None:
    if not raw:
        return None
    kinds = [k.strip() for k in raw.split(",") if k.strip()]
    for kind in kinds:
        if not KIND_NAME.match(kind):
            raise CliError(f"--kinds: {kind!r} is not a kind name")
    return kinds


async def _run_worker(settings: Settings, config: Config, kinds: list[str] | None) -> None:
    from mailq.sender import sender_from_url
    from mailq.worker import Worker

    sender = sender_from_url(
        settings.backend_url,
        connections=settings.concurrency,
        connect_timeout_s=settings.smtp_connect_timeout_s,
        reply_timeout_s=settings.smtp_reply_timeout_s,
        quirks=config.quirks,
    )
    worker = Worker(settings, sender, kinds=kinds, config=config)
    loop = asyncio.get_running_loop()
    signals_seen = 0

    def on_signal() -> None:
        nonlocal signals_seen
        signals_seen += 1
        if signals_seen == 1:
            print("mailq worker: stopping (a second signal exits at once)", file=sys.stderr)
            worker.stop()
        else:
            os._exit(1)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    await worker.run()


def cmd_worker(args: argparse.Namespace) -> int:
    settings, config = _configured(args)
    _database_url(settings)
    asyncio.run(_run_worker(settings, config, _parse_kinds(args.kinds)))
    return 0


# -- enqueue -------------------------------------------------------------------------------


def _email_lines(stream: TextIO) -> Iterator[tuple[int, dict[str, Any]]]:
    for number, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CliError(f"line {number}: not JSON ({exc.msg})") from None
        if not isinstance(value, dict):
            raise CliError(f"line {number}: each line must be a JSON object")
        yield number, value


ENQUEUE_CHUNK = 10_000


async def _enqueue_file(settings: Settings, stream: TextIO, config: Config) -> int:
    import asyncpg

    from mailq.errors import InvalidEmail
    from mailq.schema import ensure_current
    from mailq.wire import email_from_json

    conn = await asyncpg.connect(_database_url(settings))
    try:
        await ensure_current(conn)
        total = 0
        # All or nothing: every line is validated and written in one transaction.
        async with conn.transaction():
            chunk: list[Any] = []
            first_line = 1
            for number, data in _email_lines(stream):
                if not chunk:
                    first_line = number
                try:
                    chunk.append(email_from_json(data))
                except InvalidEmail as exc:
                    raise CliError(f"line {number}: {exc}") from None
                if len(chunk) >= ENQUEUE_CHUNK:
                    total += await _enqueue_chunk(conn, settings, config, chunk, first_line)
                    chunk = []
            if chunk:
                total += await _enqueue_chunk(conn, settings, config, chunk, first_line)
        return total
    finally:
        await conn.close()


async def _enqueue_chunk(
    conn: Any, settings: Settings, config: Config, chunk: list[Any], first: int
) -> int:
    from mailq.errors import InvalidEmail
    from mailq.queue import build_rows, enqueue_rows

    rows = []
    for offset, email in enumerate(chunk):
        try:
            rows.extend(
                build_rows(
                    [email],
                    default_from=settings.from_address,
                    kinds=config.kinds,
                    templates=config.templates,
                )
            )
        except InvalidEmail as exc:
            raise CliError(f"email {first + offset}: {exc}") from None
    return len(await enqueue_rows(conn, rows))


def cmd_enqueue(args: argparse.Namespace) -> int:
    settings, config = _configured(args)
    if args.file == "-":
        count = asyncio.run(_enqueue_file(settings, sys.stdin, config))
    else:
        path = Path(args.file)
        if not path.is_file():
            raise CliError(f"--file: {path} does not exist")
        with path.open(encoding="utf-8") as stream:
            count = asyncio.run(_enqueue_file(settings, stream, config))
    print(f"queued {count} emails")
    return 0


# -- campaign ------------------------------------------------------------------------------


async def _create_campaign(
    settings: Settings, config: Config, args: argparse.Namespace, stream: TextIO
) -> str:
    import asyncpg

    from mailq.campaigns import NewCampaign, create_campaign, recipients_from_csv
    from mailq.errors import InvalidEmail
    from mailq.schema import ensure_current
    from mailq.wire import parse_send_at

    try:
        send_at = parse_send_at(args.send_at)
        assert send_at is not None
        campaign = NewCampaign(
            name=args.name,
            kind=args.kind,
            send_at=send_at,
            subject=args.subject,
            text=_read_option(args.text, "--text"),
            html=_read_option(args.html, "--html"),
            template=args.template,
            from_address=args.from_address,
        )
    except InvalidEmail as exc:
        raise CliError(str(exc)) from None
    conn = await asyncpg.connect(_database_url(settings))
    try:
        await ensure_current(conn)
        try:
            created, added = await create_campaign(
                conn,
                campaign,
                recipients_from_csv(stream),
                default_from=settings.from_address,
                kinds=config.kinds,
                templates=config.templates,
            )
        except InvalidEmail as exc:
            raise CliError(f"{args.csv}: {exc}") from None
    finally:
        await conn.close()
    extra = f", {added.suppressed} suppressed" if added.suppressed else ""
    return (
        f"campaign {created.id} ({created.name!r}, {created.kind}) due at "
        f"{created.send_at.isoformat()}: {added.added} recipients, "
        f"{added.duplicates} duplicates ignored{extra}"
    )


def _read_option(value: str | None, flag: str) -> str | None:
    """A body given as @FILE is read from that file; otherwise it is the text itself."""
    if value is None or not value.startswith("@"):
        return value
    path = Path(value[1:])
    try:
        return path.read_text("utf-8")
    except OSError as exc:
        raise CliError(f"{flag}: cannot read {path}: {exc.strerror or exc}") from None


def cmd_campaign_create(args: argparse.Namespace) -> int:
    settings, config = _configured(args)
    if args.csv == "-":
        summary = asyncio.run(_create_campaign(settings, config, args, sys.stdin))
    else:
        path = Path(args.csv)
        if not path.is_file():
            raise CliError(f"--csv: {path} does not exist")
        with path.open(encoding="utf-8", newline="") as stream:
            summary = asyncio.run(_create_campaign(settings, config, args, stream))
    print(summary)
    return 0


# -- entry points --------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mailq", description="A Postgres-native email queue.")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING (default INFO)")
    parser.add_argument("--database-url", help="overrides MAILQ_DATABASE_URL")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    migrate = commands.add_parser("migrate", help="bring the schema to the newest revision")
    migrate.set_defaults(handler=cmd_migrate)

    worker = commands.add_parser("worker", help="run one worker process")
    _worker_arguments(worker)
    worker.set_defaults(handler=cmd_worker)

    enqueue = commands.add_parser("enqueue", help="bulk enqueue emails from a JSON-lines file")
    enqueue.add_argument("--file", required=True, help="a .jsonl file, or - for stdin")
    enqueue.set_defaults(handler=cmd_enqueue)

    campaign = commands.add_parser("campaign", help="campaigns: one email per recipient")
    campaign_commands = campaign.add_subparsers(dest="campaign_command", required=True)
    create = campaign_commands.add_parser(
        "create", help="create a campaign from a CSV of recipients (column email + context)"
    )
    create.add_argument("--csv", required=True, help="a CSV file with a header row, or -")
    create.add_argument("--name", required=True, help="the campaign's name")
    create.add_argument("--kind", required=True, help="e.g. search_engine")
    create.add_argument("--send-at", required=True, help="RFC 3339, e.g. 2030-01-01T09:00:00Z")
    create.add_argument("--template", help="a named template (default: the kind's)")
    create.add_argument("--subject", help="inline subject (a Jinja2 template)")
    create.add_argument("--text", help="inline text body, or @FILE")
    create.add_argument("--html", help="inline HTML body, or @FILE")
    create.add_argument("--from", dest="from_address", help="the From address (MAILQ_FROM)")
    create.set_defaults(handler=cmd_campaign_create)

    return parser


def _worker_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kinds", help="comma-separated kinds to send (default: all)")
    parser.add_argument("--concurrency", type=int, help="sends in flight (MAILQ_CONCURRENCY)")


def run(argv: Sequence[str] | None, parser: argparse.ArgumentParser) -> int:
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    logs.configure(args.log_level)
    try:
        result: int = args.handler(args)
    except MailqError as exc:
        print(f"mailq: {exc}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, CliError) else 1
    except KeyboardInterrupt:
        return 130
    return result


def main(argv: Sequence[str] | None = None) -> int:
    return run(argv, _parser())


def worker_main(argv: Sequence[str] | None = None) -> int:
    """`python -m mailq.worker [--kinds …] [--concurrency N]`."""
    parser = argparse.ArgumentParser(prog="python -m mailq.worker")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--database-url", help="overrides MAILQ_DATABASE_URL")
    _worker_arguments(parser)
    parser.set_defaults(handler=cmd_worker)
    return run(argv, parser)


if __name__ == "__main__":
    raise SystemExit(main())
