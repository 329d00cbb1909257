"""How one `mailq` command runs: the argparse Parser whose usage errors are one line, and
run(), which parses, configures logging, calls the command's handler and turns what it
raises into an exit code (0 done, 1 failed, 2 a usage error, 130 interrupted).

`mailq` (mailq.cli.main) and `python -m mailq.worker` (mailq.cli.worker) both run through it.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import sys
from collections.abc import Sequence
from typing import NoReturn

from mailq import logs
from mailq.db.connection import DATABASE_ERRORS, unavailable
from mailq.errors import EmailNotFound, InvalidEmail, MailqError, NotAllowed, UsageError

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
# These mean "you asked for something that cannot be": one line on stderr, exit 2.
USAGE_ERRORS = (UsageError, EmailNotFound, NotAllowed, InvalidEmail)


class CliError(UsageError):
    """A command cannot go on; the message is printed as one line on stderr."""


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (and exit 2), like every other."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")


def run(argv: Sequence[str] | None, parser: argparse.ArgumentParser) -> int:
    """Parse `argv`, run the chosen handler (a coroutine runs in asyncio.run), exit code."""
    try:
        args, extra = parser.parse_known_args(argv)
        # A command that hands its options on (`mailq bench`) sets takes_extra.
        if extra and not getattr(args, "takes_extra", False):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as exc:
        return int(exc.code or 0)
    args.extra = extra
    logs.configure(args.log_level)
    try:
        result = args.handler(args)
        if inspect.iscoroutine(result):  # the monitor's commands are async
            result = asyncio.run(result)
    except MailqError as exc:
        print(f"mailq: {exc}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, USAGE_ERRORS) else EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except DATABASE_ERRORS as exc:
        print(f"mailq: {unavailable(exc)}", file=sys.stderr)
        return EXIT_FAILED
    return int(result)
