"""`mailq bench …` is `python -m bench …` run from a checkout (the benchmark, its peers and
their dependencies are not shipped in the wheel)."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Any

from mailq.cli.command import CliError


def cmd_bench(args: argparse.Namespace) -> int:
    checkout = checkout_with_bench(Path.cwd())
    if checkout is None:
        raise CliError(
            "mailq bench runs from a checkout of the mailq repository: cd into it and run "
            "`python -m bench` (the benchmark is not part of the installed package)"
        )
    argv = [sys.executable, "-m", "bench", *args.extra]
    if args.database_url:
        argv += ["--database-url", args.database_url]
    return subprocess.run(argv, cwd=checkout, check=False).returncode


def checkout_with_bench(start: Path) -> Path | None:
    for folder in (start, *start.parents):
        if (folder / "bench" / "__main__.py").is_file() and (folder / "mailq").is_dir():
            return folder
    return None


def add_commands(commands: Any) -> None:
    bench = commands.add_parser(
        "bench",
        help="measure mailq's speed next to a bare SQL loop (from a checkout: python -m bench)",
        add_help=False,
    )
    # Every option after `bench` goes on to `python -m bench` (see mailq.cli.command.run).
    bench.set_defaults(handler=cmd_bench, takes_extra=True)
