"""How one `mailq` command runs: the argparse Parser whose usage errors are one line, and
run(), which parses, configures logging, calls the command's handler and turns what it
raises into an exit code (0 done, 1 failed, 2 a usage error, 130 interrupted).

`mailq` (mailq.cli.main) and `python -m mailq.worker` (mailq.cli.worker) both run through it.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import logging
import re
import sys
from collections.abc import Sequence
from typing import NoReturn

from mailq import logs
from mailq.db.connection import DATABASE_ERRORS, unavailable
from mailq.errors import EmailNotFound, InvalidEmail, MailqError, NotAllowed, UsageError
from mailq.redaction import redact

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
# An error line quotes the input at most this long (an address of 4 MB is not echoed).
MAX_ERROR_CHARS = 500
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# These mean "you asked for something that cannot be": one line on stderr, exit 2.
USAGE_ERRORS = (UsageError, EmailNotFound, NotAllowed, InvalidEmail)


class CliError(UsageError):
    """A command cannot go on; the message is printed as one line on stderr."""


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (and exit 2), like every other."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {one_line(message)} (see {self.prog} --help)\n")


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
        error_line(str(exc))
        return EXIT_USAGE if isinstance(exc, USAGE_ERRORS) else EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except DATABASE_ERRORS as exc:
        error_line(str(unavailable(exc)))
        return EXIT_FAILED
    except UnicodeDecodeError:
        # Standard input (`-`) that is not text; files name their line themselves.
        error_line("the input is not UTF-8 text")
        return EXIT_USAGE
    except Exception as exc:
        # A bug, not the user's input: still one line (the traceback only at DEBUG).
        logging.getLogger(__name__).debug("unexpected error", exc_info=exc)
        error_line(f"unexpected error: {type(exc).__name__}: {exc}")
        return EXIT_FAILED
    return int(result)


def error_line(message: str) -> None:
    """`message` as the one line on stderr that a failed command prints: secrets redacted,
    line breaks and control characters shown escaped, at most MAX_ERROR_CHARS long."""
    print(f"mailq: {one_line(message)}", file=sys.stderr)


def one_line(message: str, limit: int = MAX_ERROR_CHARS) -> str:
    # An argument that was not UTF-8 reaches Python as lone surrogates: shown escaped.
    text = redact(message).encode("utf-8", "backslashreplace").decode("utf-8")
    text = _CONTROL.sub(lambda m: repr(m.group(0))[1:-1], text)
    return text if len(text) <= limit else text[: limit - 3] + "..."
