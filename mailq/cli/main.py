"""The `mailq` command. Reads the environment (Settings.from_env) and configures logging;
everything below it gets its settings passed in."""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO, TypeVar

from mailq import logs
from mailq.cli import display, monitor
from mailq.config import Config, load_settings
from mailq.db import embedded
from mailq.errors import EmailNotFound, InvalidEmail, MailqError, NotAllowed, UsageError
from mailq.kinds import KIND_NAME
from mailq.settings import Settings

T = TypeVar("T")
EXIT_USAGE = 2
# These mean "you asked for something that cannot be": one line on stderr, exit 2.
USAGE_ERRORS = (UsageError, EmailNotFound, NotAllowed, InvalidEmail)


class CliError(UsageError):
    """A command cannot go on; the message is printed as one line on stderr."""


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (and exit 2), like every other."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _settings(args: argparse.Namespace) -> Settings:
    return _configured(args)[0]


def _configured(args: argparse.Namespace) -> tuple[Settings, Config]:
    """Settings from the environment and the MAILQ_CONFIG file, then the command's flags."""
    settings, config = load_settings()
    return monitor.with_flags(settings, args), config


def _database_url(settings: Settings) -> str:
    """MAILQ_DATABASE_URL, or the embedded PostgreSQL under MAILQ_HOME (with a warning)."""
    return embedded.database_url(settings)


# -- migrate -------------------------------------------------------------------------------


def cmd_migrate(args: argparse.Namespace) -> int:
    from mailq.db.schema import HEAD, migrate

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


async def _run_worker(
    settings: Settings, config: Config, kinds: list[str] | None, early: list[int]
) -> None:
    from mailq.delivery.backends import sender_from_url
    from mailq.worker.worker import Worker

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
    if early:  # told to stop while it started: it claims nothing and exits 0
        await sender.close()
        return
    await worker.run()


def cmd_worker(args: argparse.Namespace) -> int:
    from mailq.startup import EARLY_SIGNALS, catch_early_signals, starting_a_worker

    if not starting_a_worker():
        catch_early_signals()  # `mailq worker`: from here on (python -m did it at import)
    kinds = _parse_kinds(args.kinds)
    settings, config = _configured(args)
    if EARLY_SIGNALS:
        return 0  # told to stop before it started: nothing was claimed
    resolved = embedded.resolve(settings)
    if EARLY_SIGNALS:
        return 0
    asyncio.run(_run_worker(resolved, config, kinds, EARLY_SIGNALS))
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


async def _enqueue_file(
    settings: Settings, stream: TextIO, config: Config, expected: int | None
) -> int:
    import asyncpg

    from mailq.db.schema import ensure_current
    from mailq.enqueue import build_rows, enqueue_rows
    from mailq.errors import InvalidEmail
    from mailq.validation import EmailRow
    from mailq.wire import email_from_json

    conn = await asyncpg.connect(_database_url(settings))
    try:
        await ensure_current(conn)
        total = 0
        # All or nothing: every line is validated and written in one transaction.
        with display.progress("queueing emails", expected) as tracker:
            async with conn.transaction():
                rows: list[EmailRow] = []
                for number, data in _email_lines(stream):
                    try:
                        email = email_from_json(data)
                        rows.extend(
                            build_rows(
                                [email],
                                default_from=settings.from_address,
                                kinds=config.kinds,
                                templates=config.templates,
                            )
                        )
                    except InvalidEmail as exc:
                        raise CliError(f"line {number}: {exc}") from None
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
    settings, config = _configured(args)
    if args.file == "-":
        count = asyncio.run(_enqueue_file(settings, sys.stdin, config, None))
    else:
        path = Path(args.file)
        if not path.is_file():
            raise CliError(f"--file: {path} does not exist")
        with path.open(encoding="utf-8") as stream:
            expected = sum(1 for line in stream if line.strip())
            stream.seek(0)
            count = asyncio.run(_enqueue_file(settings, stream, config, expected))
    print(f"queued {count} emails")
    return 0


# -- serve ---------------------------------------------------------------------------------


async def _check_schema(url: str) -> None:
    import asyncpg

    from mailq.db.schema import ensure_current

    try:
        conn = await asyncpg.connect(url, timeout=10)
    except (OSError, asyncpg.PostgresError) as exc:
        raise CliError(f"cannot reach the queue's database: {exc}") from None
    try:
        await ensure_current(conn)
    finally:
        await conn.close()


def _metrics_dir() -> Path:
    """One fresh folder for the metrics of all the service's processes (prometheus-client's
    multiprocess mode): PROMETHEUS_MULTIPROC_DIR emptied of an earlier run's files, or a new
    temporary folder."""
    import tempfile

    configured = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if configured:
        folder = Path(configured)
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("*.db"):
            stale.unlink(missing_ok=True)
        return folder
    return Path(tempfile.mkdtemp(prefix="mailq-metrics-"))


def cmd_serve(args: argparse.Namespace) -> int:
    import shutil

    import uvicorn

    settings = _settings(args)
    url = _database_url(settings)
    asyncio.run(_check_schema(url))
    # The service's processes read their settings from the environment themselves.
    os.environ["MAILQ_DATABASE_URL"] = url
    if args.concurrency is not None:
        os.environ["MAILQ_CONCURRENCY"] = str(args.concurrency)
    created = "PROMETHEUS_MULTIPROC_DIR" not in os.environ
    folder = _metrics_dir()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)
    try:
        uvicorn.run(
            "mailq.service.app:app",
            host=args.host,
            port=args.port,
            workers=args.workers,
            log_level=args.log_level.lower(),
            timeout_graceful_shutdown=int(settings.shutdown_grace_s) + 5,
        )
    finally:
        if created:
            shutil.rmtree(folder, ignore_errors=True)
    return 0


# -- campaign ------------------------------------------------------------------------------


async def _create_campaign(
    settings: Settings, config: Config, args: argparse.Namespace, stream: TextIO
) -> str:
    import asyncpg

    from mailq.campaigns import NewCampaign, create_campaign, recipients_from_csv
    from mailq.db.schema import ensure_current
    from mailq.errors import InvalidEmail
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
            with display.progress("importing recipients") as tracker:
                created, added = await create_campaign(
                    conn,
                    campaign,
                    _counted(recipients_from_csv(stream), tracker),
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


def _counted(items: Iterable[T], tracker: display.Tracker) -> Iterator[T]:
    """Pass items through, advancing a progress display every thousand."""
    pending = 0
    for item in items:
        yield item
        pending += 1
        if pending == 1000:
            tracker.advance(pending)
            pending = 0
    tracker.advance(pending)


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


# -- bench ---------------------------------------------------------------------------------


def cmd_bench(args: argparse.Namespace) -> int:
    """`mailq bench …` is `python -m bench …` run from a checkout (the benchmark, its peers and
    their dependencies are not shipped in the wheel)."""
    checkout = _checkout_with_bench(Path.cwd())
    if checkout is None:
        raise CliError(
            "mailq bench runs from a checkout of the mailq repository: cd into it and run "
            "`python -m bench` (the benchmark is not part of the installed package)"
        )
    argv = [sys.executable, "-m", "bench", *args.bench_args]
    if args.database_url:
        argv += ["--database-url", args.database_url]
    return subprocess.run(argv, cwd=checkout, check=False).returncode


def _checkout_with_bench(start: Path) -> Path | None:
    for folder in (start, *start.parents):
        if (folder / "bench" / "__main__.py").is_file() and (folder / "mailq").is_dir():
            return folder
    return None


# -- entry points --------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = Parser(prog="mailq", description="A Postgres-native email queue.")
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

    serve = commands.add_parser(
        "serve", help="run the HTTP service (uvicorn service.app:app), workers built in"
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    serve.add_argument("--workers", type=int, default=1, help="processes (default 1)")
    serve.add_argument("--concurrency", type=int, help="sends in flight per embedded worker")
    serve.set_defaults(handler=cmd_serve)

    up = commands.add_parser(
        "up", help="everything on this machine: database, service, worker, file outbox"
    )
    up.add_argument("--host", default="127.0.0.1", help="the service's address (127.0.0.1)")
    up.add_argument("--port", type=int, default=8000, help="the service's port (8000)")
    up.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes to run (1); 0: the service's embedded worker sends",
    )
    up.set_defaults(handler=cmd_up)

    monitor.add_commands(commands)

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

    bench = commands.add_parser(
        "bench",
        help="measure mailq's speed next to a bare SQL loop (from a checkout: python -m bench)",
        add_help=False,
    )
    # Every option after `bench` goes to `python -m bench` (see run()).
    bench.set_defaults(handler=cmd_bench, bench_args=[])

    return parser


def cmd_up(args: argparse.Namespace) -> int:
    from mailq.cli.up import Up

    return Up(_settings(args), host=args.host, port=args.port, workers=args.workers).run()


def _worker_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kinds", help="comma-separated kinds to send (default: all)")
    parser.add_argument("--concurrency", type=int, help="sends in flight (MAILQ_CONCURRENCY)")


def run(argv: Sequence[str] | None, parser: argparse.ArgumentParser) -> int:
    try:
        args, extra = parser.parse_known_args(argv)
        if extra and getattr(args, "handler", None) is not cmd_bench:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as exc:
        return int(exc.code or 0)
    if extra:  # `mailq bench` hands every option on to `python -m bench`
        args.bench_args = [*args.bench_args, *extra]
    logs.configure(args.log_level)
    try:
        result = args.handler(args)
        if inspect.iscoroutine(result):  # the monitor's commands are async
            result = asyncio.run(result)
    except MailqError as exc:
        print(f"mailq: {exc}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, USAGE_ERRORS) else 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if not _is_database_error(exc):
            raise
        print(f"mailq: cannot reach the queue's database: {_one_line(exc)}", file=sys.stderr)
        return 1
    return int(result)


def _is_database_error(exc: BaseException) -> bool:
    import asyncpg
    import psycopg
    from sqlalchemy.exc import OperationalError

    return isinstance(
        exc, OSError | asyncpg.PostgresError | psycopg.OperationalError | OperationalError
    )


def _one_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc)
    return " ".join(text.split())[:300]


def main(argv: Sequence[str] | None = None) -> int:
    return run(argv, _parser())


def worker_main(argv: Sequence[str] | None = None) -> int:
    """`python -m mailq.worker [--kinds …] [--concurrency N]`."""
    parser = Parser(prog="python -m mailq.worker")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--database-url", help="overrides MAILQ_DATABASE_URL")
    _worker_arguments(parser)
    parser.set_defaults(handler=cmd_worker)
    return run(argv, parser)
