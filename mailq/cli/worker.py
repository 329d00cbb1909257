"""`mailq worker` and `python -m mailq.worker`: one worker process. The first SIGTERM or
SIGINT stops it gracefully (in-flight sends finish), a second one exits at once; one that
comes while the process starts (mailq.startup) stops it before it claims anything, exit 0."""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

from mailq.cli.command import CliError, Parser, run
from mailq.cli.options import configured
from mailq.config import Config
from mailq.db import embedded
from mailq.kinds import KIND_NAME
from mailq.settings import Settings
from mailq.startup import EARLY_SIGNALS, catch_early_signals, starting_a_worker


def parse_kinds(raw: str | None) -> list[str] | None:
    if not raw:
        return None
    kinds = [k.strip() for k in raw.split(",") if k.strip()]
    for kind in kinds:
        if not KIND_NAME.match(kind):
            raise CliError(f"--kinds: {kind!r} is not a kind name")
    return kinds


async def run_worker(settings: Settings, config: Config, kinds: list[str] | None) -> None:
    # Imported here: the other commands never load the worker and its senders.
    from mailq.delivery.backends import sender_from_url
    from mailq.worker.worker import Worker

    sender = sender_from_url(
        settings.backend_url,
        connections=settings.concurrency,
        connect_timeout_s=settings.smtp_connect_timeout_s,
        reply_timeout_s=settings.smtp_reply_timeout_s,
        quirks=config.quirks,
        helo_name=settings.helo_name,
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
    if EARLY_SIGNALS:  # told to stop while it started: it claims nothing and exits 0
        await sender.close()
        return
    # What start-up made (modules, settings, the sender) lives as long as the process: kept
    # out of the collector's passes, which otherwise walk its ~50,000 objects again and again
    # while claimed emails come and go.
    gc.freeze()
    await worker.run()


def cmd_worker(args: argparse.Namespace) -> int:
    if not starting_a_worker():
        catch_early_signals()  # `mailq worker`: from here on (python -m did it at import)
    kinds = parse_kinds(args.kinds)
    settings, config = configured(args)
    if EARLY_SIGNALS:
        return 0  # told to stop before it started: nothing was claimed
    resolved = embedded.resolve(settings)
    if EARLY_SIGNALS:
        return 0
    asyncio.run(run_worker(resolved, config, kinds))
    return 0


def worker_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kinds", help="comma-separated kinds to send (default: all)")
    parser.add_argument("--concurrency", type=int, help="sends in flight (MAILQ_CONCURRENCY)")
    parser.set_defaults(handler=cmd_worker)


def add_commands(commands: Any) -> None:
    worker_arguments(commands.add_parser("worker", help="run one worker process"))


def worker_main(argv: Sequence[str] | None = None) -> int:
    """`python -m mailq.worker [--kinds …] [--concurrency N]`."""
    parser = Parser(prog="python -m mailq.worker")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--database-url", help="overrides MAILQ_DATABASE_URL")
    worker_arguments(parser)
    return run(argv, parser)
