"""`mailq bounces serve [--listen HOST:PORT]` (the inbound SMTP server of the bounce domain) and
`mailq bounces import FILE|-` (one message from an MTA's pipe transport: exit 0 when it was
recorded or carried nothing to record, 75 EX_TEMPFAIL when the database is unavailable, so that
the MTA keeps the message and tries again)."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg

from mailq.bounces.inbound import MAX_MESSAGE_BYTES, Inbox
from mailq.bounces.recorder import BounceRules
from mailq.bounces.verp import Verp
from mailq.cli.command import CliError
from mailq.cli.options import configured, database_url
from mailq.compose.unsubscribe import load_secret_key
from mailq.config import Config
from mailq.db.connection import DATABASE_ERRORS
from mailq.db.schema import ensure_current
from mailq.settings import Settings

EX_TEMPFAIL = 75  # sysexits.h: the MTA defers the message and retries


def _verp(settings: Settings) -> Verp | None:
    if not settings.bounce_domain:
        return None
    return Verp.from_secret(settings.bounce_domain, load_secret_key(settings))


@asynccontextmanager
async def _inbox(settings: Settings, config: Config) -> AsyncIterator[Inbox]:
    pool = await asyncpg.create_pool(database_url(settings), min_size=1, max_size=4)
    assert pool is not None
    try:
        await ensure_current(pool)
        yield Inbox(
            pool,
            _verp(settings),
            home=settings.home,
            feedback_address=config.feedback_address,
            rules=BounceRules(config.bounces, config.kind_bounces),
        )
    finally:
        await pool.close()


# -- serve ---------------------------------------------------------------------------------


async def cmd_serve(args: argparse.Namespace) -> int:
    from mailq.bounces.server import serve, split_listen

    settings, config = configured(args)
    try:
        host, port = split_listen(args.listen)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    if not settings.bounce_domain and not config.feedback_address:
        raise CliError(
            "bounces serve: set MAILQ_BOUNCE_DOMAIN (and/or [bounces] feedback_address in "
            "MAILQ_CONFIG): without them no address is accepted"
        )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with _inbox(settings, config) as inbox:

        def listening(bound: tuple[Any, ...]) -> None:
            domain = settings.bounce_domain or "-"
            print(
                f"mailq bounces: listening on {bound[0]}:{bound[1]} for {domain}",
                file=sys.stderr,
                flush=True,
            )

        await serve(inbox, host, port, stop, hostname=settings.helo_name, on_listening=listening)
    return 0


# -- import --------------------------------------------------------------------------------


def _read(source: str) -> bytes:
    if source == "-":
        raw = sys.stdin.buffer.read(MAX_MESSAGE_BYTES + 1)
    else:
        path = Path(source)
        try:
            with path.open("rb") as handle:
                raw = handle.read(MAX_MESSAGE_BYTES + 1)
        except OSError as exc:
            raise CliError(f"bounces import: cannot read {path}: {exc.strerror or exc}") from None
    if len(raw) > MAX_MESSAGE_BYTES:
        raise CliError(f"bounces import: the message is over {MAX_MESSAGE_BYTES} bytes")
    return raw


async def cmd_import(args: argparse.Namespace) -> int:
    settings, config = configured(args)
    raw = _read(args.file)
    try:
        async with _inbox(settings, config) as inbox:
            received = await inbox.receive(raw, args.recipient or ())
    except DATABASE_ERRORS as exc:
        print(f"mailq: the bounce was not recorded, try again later: {exc}", file=sys.stderr)
        return EX_TEMPFAIL
    print(received.summary())
    return 0


# -- the parser ----------------------------------------------------------------------------


def add_commands(commands: Any) -> None:
    group = commands.add_parser(
        "bounces", help="inbound bounces and feedback reports (serve, import)"
    )
    sub = group.add_subparsers(dest="bounces_command", required=True, metavar="COMMAND")
    serve = sub.add_parser(
        "serve",
        help="an SMTP server for MAILQ_BOUNCE_DOMAIN that records bounces and complaints",
    )
    serve.add_argument(
        "--listen", default="127.0.0.1:2526", metavar="HOST:PORT", help="(127.0.0.1:2526)"
    )
    serve.add_argument(
        "--database-url", default=argparse.SUPPRESS, help="overrides MAILQ_DATABASE_URL"
    )
    serve.set_defaults(handler=cmd_serve)
    imp = sub.add_parser(
        "import", help="read one bounce or feedback report (an MTA's pipe transport)"
    )
    imp.add_argument("file", metavar="FILE|-", help="the message, or - for stdin")
    imp.add_argument(
        "--recipient",
        action="append",
        metavar="ADDRESS",
        help="the envelope recipient (Postfix: ${recipient}); may be repeated",
    )
    imp.add_argument(
        "--database-url", default=argparse.SUPPRESS, help="overrides MAILQ_DATABASE_URL"
    )
    imp.set_defaults(handler=cmd_import)
